from common.migrations import run_env
from svc_notify.models import Base

run_env(Base.metadata)
