#!/usr/bin/env bash
# slurm_conf.sh: writes the configuration of a personal Slurm (MyCluster, docs/MYCLUSTER.md)
# whose daemons run as you on compute nodes of several sites, joined by UVPN.
#
#   slurm_conf.sh --dir DIR --controller NODE --nodes NODE[,NODE...] [--cpus N] [--user USER]
#                 [--port-base PORT] [--tmpfs DIR]
#
# Every NODE is the overlay name its compute node registered (uvpn_register -r --name NODE).
# Writes into DIR: slurm.conf (SlurmctldHost and every NodeAddr by overlay name NODE.uvpn,
# SlurmUser/SlurmdUser USER, one Port= per node from PORT-BASE so that several slurmd can share
# a host), cgroup.conf, task_prolog (gives each task the overlay identity of the node it runs
# on, from DIR/env/NODE, which the node's wrapper writes) and the directories the daemons use.
# --tmpfs: each node's scratch directory (Slurm's TmpFS; PMIx puts its sockets there), when the
# nodes' /tmp is shared.
# Exit status 0, 2 on a usage error.
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
dir="" ctl="" nodes="" cpus=1 user=$(id -un) base=6818 tmpfs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=${2:-}; shift 2 ;;
    --controller) ctl=${2:-}; shift 2 ;;
    --nodes) nodes=${2:-}; shift 2 ;;
    --cpus) cpus=${2:-}; shift 2 ;;
    --user) user=${2:-}; shift 2 ;;
    --port-base) base=${2:-}; shift 2 ;;
    --tmpfs) tmpfs=${2:-}; shift 2 ;;
    -h|--help) usage ;;
    *) echo "slurm_conf.sh: unknown argument: $1" >&2; usage ;;
  esac
done
[ -n "$dir" ] && [ -n "$ctl" ] && [ -n "$nodes" ] || usage
case "$cpus$base" in *[!0-9]*) echo "slurm_conf.sh: --cpus and --port-base take numbers: $cpus $base" >&2; exit 2 ;; esac
for n in ${nodes//,/ } "$ctl"; do
  [[ "$n" =~ ^[A-Za-z0-9-]{1,63}$ ]] || { echo "slurm_conf.sh: not an overlay name: $n" >&2; exit 2; }
done
dir=$(mkdir -p "$dir" && cd "$dir" && pwd)
mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/env"

port=$base
node_lines=""
for n in ${nodes//,/ }; do
  node_lines+="NodeName=$n NodeAddr=$n.uvpn NodeHostname=$n Port=$port CPUs=$cpus State=UNKNOWN"$'\n'
  port=$((port + 1))
done

cat >"$dir/slurm.conf" <<CONF
# A personal Slurm across sites through UVPN (written by scripts/mycluster/slurm_conf.sh).
ClusterName=mycluster
SlurmctldHost=$ctl($ctl.uvpn)
SlurmctldPort=6817
SlurmUser=$user
SlurmdUser=$user
# No root anywhere: no munge daemon to ask an administrator for, no cgroup delegation.
AuthType=auth/none
CredType=cred/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmdTimeout=60
TreeWidth=50
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.%n.log
# Each task gets the overlay identity of its own node (srun passes srun's environment on).
TaskProlog=$dir/task_prolog
${tmpfs:+TmpFS=$tmpfs}
$node_lines
PartitionName=all Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

cat >"$dir/cgroup.conf" <<CONF
# Unprivileged: no cgroup is ever created (proctrack/linuxproc, task/none); v1 keeps slurmd
# from probing a cgroup v2 tree it cannot use.
CgroupPlugin=cgroup/v1
CONF

cat >"$dir/task_prolog" <<'PROLOG'
#!/bin/sh
# Slurm TaskProlog: "export NAME=value" lines become the task's environment.
f="$(dirname "$0")/env/$SLURMD_NODENAME"
[ -r "$f" ] && cat "$f"
exit 0
PROLOG
chmod 755 "$dir/task_prolog"
echo "slurm_conf.sh: wrote $dir/slurm.conf for controller $ctl and nodes $nodes"
