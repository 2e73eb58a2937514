"""Start-up file of the operators' ``nameko shell`` (ops/operator_shell.py says what it
adds). ``python -m ops.nameko_cli shell`` runs it; with plain ``nameko shell``, set
``PYTHONSTARTUP=ops/shell_startup.py``. nameko evaluates it in the shell's namespace,
where ``n`` is its helper."""

from ops.operator_shell import prepare as _prepare

print(_prepare(n))  # noqa: F821 - `n` is in the namespace nameko runs this file in
del _prepare
