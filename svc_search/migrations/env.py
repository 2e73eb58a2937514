from common.migrations import run_env
from svc_search.models import Base

run_env(Base.metadata)
