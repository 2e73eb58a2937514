from common.migrations import run_env
from svc_bridge.models import Base

run_env(Base.metadata)
