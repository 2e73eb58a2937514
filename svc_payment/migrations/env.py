from common.migrations import run_env
from svc_payment.models import Base

run_env(Base.metadata)
