package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on every Linux architecture Go
// supports.
const clockTicks = 100

// stat returns the fields of /proc/<pid>/stat after the command name (field 3 of the line onwards), or nil
// once the process is gone. The command name may hold spaces and parentheses; nothing after its last ')'
// does.
func stat(pid int) []string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	return strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
}

// cpuTime returns the CPU time (user + system) a process has used so far, and false once it is gone.
func cpuTime(pid int) (time.Duration, bool) {
	fields := stat(pid)
	if len(fields) < 13 || fields[0] == "Z" {
		return 0, false
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64) // field 14 of the line
	stime, _ := strconv.ParseInt(fields[12], 10, 64) // field 15
	return time.Duration(utime+stime) * time.Second / clockTicks, true
}

// pidOf returns the PID of this process's child running the executable at path, or 0. Only a child counts:
// a control plane left over from another run (a test killed on a timeout) runs the same executable, idle,
// and metering it would report next to nothing.
func pidOf(path string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && exe == path && parentOf(pid) == os.Getpid() {
			return pid
		}
	}
	return 0
}

// parentOf returns the parent PID of pid (field 4 of its stat line), or 0.
func parentOf(pid int) int {
	fields := stat(pid)
	if len(fields) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

// cpuMeter accounts the CPU time that named processes spend during a run.
type cpuMeter struct {
	names []string
	pids  []int
	start []time.Duration
}

// newCPUMeter meters the processes of procs that are running, in the given order, from now on.
func newCPUMeter(procs map[string]int, order ...string) *cpuMeter {
	m := &cpuMeter{}
	for _, n := range order {
		if t, ok := cpuTime(procs[n]); procs[n] > 0 && ok {
			m.names, m.pids, m.start = append(m.names, n), append(m.pids, procs[n]), append(m.start, t)
		}
	}
	return m
}

// since returns each process's CPU time since the meter began, shared over n decisions.
func (m *cpuMeter) since(n int) cpuShare {
	share := cpuShare{n: max(n, 1)}
	for i, pid := range m.pids {
		t, _ := cpuTime(pid)
		share.names = append(share.names, m.names[i])
		share.used = append(share.used, max(t-m.start[i], 0))
	}
	return share
}

// cpuShare is the CPU time processes used for n decisions.
type cpuShare struct {
	n     int
	names []string
	used  []time.Duration
}

// per returns d shared over the n decisions, in milliseconds.
func (s cpuShare) per(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000 / float64(s.n)
}

// String reads "6.10 ms (kube-apiserver 4.30, etcd 0.90, ...)": the total and each process's share, per
// decision.
// Beyond two verifiers, their shares are summed as "verifiers".
func (s cpuShare) String() string {
	var parts []string
	var verifiers time.Duration
	n := 0
	for i, d := range s.used {
		if strings.HasPrefix(s.names[i], "verifier-") {
			verifiers += d
			n++
		}
	}
	for i, d := range s.used {
		if n > 2 && strings.HasPrefix(s.names[i], "verifier-") {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", s.names[i], s.per(d)))
	}
	if n > 2 {
		parts = append(parts, fmt.Sprintf("%d verifiers %.2f", n, s.per(verifiers)))
	}
	return fmt.Sprintf("%.2f ms (%s)", s.per(s.total()), strings.Join(parts, ", "))
}

// plus is s with more's CPU time and decisions added, process by process.
func (s cpuShare) plus(more cpuShare) cpuShare {
	sum := cpuShare{n: s.n + more.n, names: slices.Clone(s.names), used: slices.Clone(s.used)}
	for i, name := range more.names {
		if j := slices.Index(sum.names, name); j >= 0 {
			sum.used[j] += more.used[i]
		} else {
			sum.names, sum.used = append(sum.names, name), append(sum.used, more.used[i])
		}
	}
	return sum
}

// of returns the named process's share per decision, in milliseconds (0 when it was not metered).
func (s cpuShare) of(name string) float64 {
	if i := slices.Index(s.names, name); i >= 0 {
		return s.per(s.used[i])
	}
	return 0
}

// total is the CPU time all the processes used.
func (s cpuShare) total() time.Duration {
	var t time.Duration
	for _, d := range s.used {
		t += d
	}
	return t
}

// settle compacts etcd's history (compact), then waits, for up to a minute, until the API server, etcd and
// the manager together use less than a tenth of a core, so that a run does not pay for the work of the one
// before it (a manager's first list, the API server's garbage collection, the compaction).
func (b *bench) settle() {
	if err := b.compact(); err != nil {
		fmt.Println("    compacting etcd:", err)
	}
	const window = 500 * time.Millisecond
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		m := newCPUMeter(b.procs, procAPIServer, procEtcd, procManager)
		time.Sleep(window)
		if m.since(1).total() < window/10 {
			return
		}
	}
	fmt.Println("    (the control plane did not settle within a minute; measuring anyway)")
}

// compact compacts etcd's history up to its current revision and waits until the compaction is done. The
// benchmark's API server compacts nothing itself (apiServerFlags): its compaction every five minutes, of a
// few minutes of decisions, stalled writes for seconds, and fell within one run or another by chance (twice
// in the half-load runs, whose p99 it took over a second).
func (b *bench) compact() error {
	var status struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	if err := etcdJSON(b.env.EtcdURL()+"/v3/kv/range", `{"key":"AA=="}`, &status); err != nil {
		return err
	}
	if status.Header.Revision == b.compacted {
		return nil
	}
	body := fmt.Sprintf(`{"revision":%q,"physical":true}`, status.Header.Revision)
	if err := etcdJSON(b.env.EtcdURL()+"/v3/kv/compaction", body, nil); err != nil {
		return err
	}
	b.compacted = status.Header.Revision
	return nil
}

// etcdJSON posts body to etcd's JSON gateway at url and decodes its answer into out (unless nil).
func etcdJSON(url, body string, out any) error {
	res, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer func() { _ = res.Body.Close() }()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", url, res.Status, bytes.TrimSpace(raw))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}
