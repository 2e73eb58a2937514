from common.migrations import run_env
from svc_catalog.models import Base

run_env(Base.metadata)
