from common.migrations import run_env
from svc_order.models import Base

run_env(Base.metadata)
