package main

import (
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// The CPUs of a machine standing for a cluster: the control plane's node, and a worker node.
const (
	controlPlaneCPU = 0
	workerCPU       = 1
)

// standForACluster makes the machine stand for a cluster until standAlone: the control plane (the API server
// and etcd) gets CPU 0 to itself, and every other process (the manager, the verifiers, the benchmark's load,
// and the extra pids) CPU 1, as on worker nodes. A verifier runs beside its application on worker nodes, so
// what a decision costs the cluster's capacity is what it costs the control plane; on two shared cores the
// verifier's own CPU would be taken from the API server instead, and a ratio to the API server's ceiling
// would measure the verifier's CPU. Verifiers started meanwhile are pinned to the worker CPU too.
func (b *bench) standForACluster(extra ...int) error {
	b.asCluster = true
	if err := pin([]int{controlPlaneCPU}, b.procs[procAPIServer], b.procs[procEtcd]); err != nil {
		return err
	}
	var others []int
	for name, pid := range b.procs {
		if name != procAPIServer && name != procEtcd {
			others = append(others, pid)
		}
	}
	return pin([]int{workerCPU}, append(others, extra...)...)
}

// standAlone lets every process the benchmark meters run on every CPU again.
func (b *bench) standAlone() {
	b.asCluster = false
	all := make([]int, runtime.NumCPU())
	for i := range all {
		all[i] = i
	}
	if err := pin(all, slices.Collect(maps.Values(b.procs))...); err != nil {
		fmt.Println("    unpinning:", err)
	}
}

// pin binds every thread of the processes pids to the CPUs cpus.
func pin(cpus []int, pids ...int) error {
	var set unix.CPUSet
	for _, cpu := range cpus {
		set.Set(cpu)
	}
	for _, pid := range pids {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err
		}
		for _, task := range tasks {
			tid, err := strconv.Atoi(task.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil {
				return fmt.Errorf("pinning thread %d of %d to CPUs %v: %w", tid, pid, cpus, err)
			}
		}
	}
	return nil
}
