from common.migrations import run_env
from svc_analytics.models import Base

run_env(Base.metadata)
