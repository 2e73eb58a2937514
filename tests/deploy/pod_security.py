"""The Kubernetes Pod Security Standards, "restricted" level (which includes "baseline"),
as a function over a pod spec: what the Pod Security Admission controller would refuse.

Written from the standard's published table of controls (kubernetes.io, "Pod Security
Standards", policy version "latest" as of Kubernetes 1.33), one check per control. The
admission controller itself is Go (k8s.io/pod-security-admission) and no Go toolchain or
cluster runs here; docs/decisions/0095 says why this stands in for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
        "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    }
)  # fmt: skip
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
        "persistentVolumeClaim", "projected", "secret",
    }
)  # fmt: skip
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
    }
)  # fmt: skip
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
SECCOMP_ALLOWED = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ALLOWED = frozenset({"RuntimeDefault", "Localhost"})


def _containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from pod.get(key) or []


def violations(pod: dict[str, Any]) -> list[str]:
    """Every control of the restricted level that this pod spec breaks (empty: admitted)."""
    found: list[str] = []
    pod_context = pod.get("securityContext") or {}
    containers = list(_containers(pod))

    def contexts() -> Iterator[tuple[str, dict[str, Any]]]:
        yield "pod", pod_context
        for container in containers:
            yield container["name"], container.get("securityContext") or {}

    # baseline
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            found.append(f"host namespaces: {flag}")
    for name, context in contexts():
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"HostProcess: {name}")
        if context.get("privileged"):
            found.append(f"privileged: {name}")
        if context.get("procMount", "Default") != "Default":
            found.append(f"/proc mount type: {name}")
        seccomp = (context.get("seccompProfile") or {}).get("type")
        if seccomp == "Unconfined":
            found.append(f"seccomp Unconfined: {name}")
        apparmor = (context.get("appArmorProfile") or {}).get("type")
        if apparmor is not None and apparmor not in APPARMOR_ALLOWED:
            found.append(f"AppArmor {apparmor}: {name}")
        selinux = context.get("seLinuxOptions") or {}
        if (
            selinux.get("type", "") not in SELINUX_TYPES
            or selinux.get("user")
            or selinux.get("role")
        ):
            found.append(f"SELinux options: {name}")
    for sysctl in pod_context.get("sysctls") or []:
        if sysctl["name"] not in SAFE_SYSCTLS:
            found.append(f"unsafe sysctl {sysctl['name']}")
    for container in containers:
        added = set(
            ((container.get("securityContext") or {}).get("capabilities") or {}).get("add") or []
        )
        if added - BASELINE_CAPABILITIES:
            found.append(f"capabilities beyond baseline: {container['name']}")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"hostPort: {container['name']}")
    for volume in pod.get("volumes") or []:
        if "hostPath" in volume:
            found.append(f"hostPath volume: {volume['name']}")

    # restricted
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            found.append(f"volume type {sorted(kinds)}: {volume['name']}")
    pod_non_root = pod_context.get("runAsNonRoot")
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    if pod_non_root is False:
        found.append("runAsNonRoot false: pod")
    if pod_context.get("runAsUser") == 0:
        found.append("runAsUser 0: pod")
    for container in containers:
        name, context = container["name"], container.get("securityContext") or {}
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"allowPrivilegeEscalation not false: {name}")
        non_root = context.get("runAsNonRoot", pod_non_root)
        if non_root is not True:
            found.append(f"runAsNonRoot not true: {name}")
        if context.get("runAsUser") == 0:
            found.append(f"runAsUser 0: {name}")
        seccomp = (context.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in SECCOMP_ALLOWED:
            found.append(f"seccompProfile not RuntimeDefault or Localhost: {name}")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"capabilities not dropping ALL: {name}")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"capabilities added beyond NET_BIND_SERVICE: {name}")
    return found
