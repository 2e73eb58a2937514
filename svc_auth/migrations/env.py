from common.migrations import run_env
from svc_auth.models import Base

run_env(Base.metadata)
