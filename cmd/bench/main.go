// Command bench measures kube2fa against its ceiling, the API server, on one local control plane in one
// run (etcd with fsync on, as in production), so that every figure comes with a ratio that holds on a
// noisy machine. `make bench` runs it; see the README for the figures of one run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/kube2fa/kube2fa/internal/controlplane"
	"github.com/kube2fa/kube2fa/internal/devcluster"
)

// config is the benchmark's flags.
type config struct {
	n, clients, reconcilers int
	duration                time.Duration
	manager, verifier, out  string
	profiles                string
	burstOnly, apfOnly      bool
	scaleOnly, verifyOnly   bool
	rounds                  int
	// forward, with forwardNamespace and forwardKubeconfig, is where this process serves as the hop
	// ceiling's forwarder (see hop.go) instead of benchmarking: the benchmark starts its own.
	forward, forwardNamespace, forwardKubeconfig string
}

// apiServerFlags size the API server's concurrency limit (its seats, which API Priority and Fairness
// shares out) to the one core its CPU-bound writes get during the APF run (see apfIsolation): 90 seats, not
// the default 600 that a large control plane is sized for. Every other run's clients are exempt from APF
// (system:masters), so the limit changes nothing else. They also turn off the API server's compaction of
// etcd every five minutes: the benchmark compacts between runs instead (see compact). And they turn off the
// API server's identity Lease, which it renews every 10 seconds (and the mixed-version proxy, which needs
// it): the only Lease writes but the benchmark's, which the request counters would otherwise count with the
// verifier's, five in a round of 48 seconds.
var apiServerFlags = map[string]string{"max-requests-inflight": "60", "max-mutating-requests-inflight": "30",
	"etcd-compaction-interval": "0", "feature-gates": "APIServerIdentity=false,UnknownVersionInteroperabilityProxy=false"}

// main reads the flags and runs the benchmark.
func main() {
	root := controlplane.RepoRoot()
	var c config
	flag.IntVar(&c.n, "n", 2000, "Enrollments created in the reconcile burst (also the verifier-memory figure).")
	flag.IntVar(&c.clients, "clients", 16, "Concurrent clients in the verification runs; the rounds measure the verifier and the Lease ceilings with twice as many, to keep the control plane busy.")
	flag.IntVar(&c.reconcilers, "reconcilers", 16, "The manager's --max-concurrent-reconciles, and the ceiling's parallelism.")
	flag.DurationVar(&c.duration, "duration", 8*time.Second, "Length of each verification run.")
	flag.StringVar(&c.manager, "manager", filepath.Join(root, "bin", "manager"), "Manager binary.")
	flag.StringVar(&c.verifier, "verifier", filepath.Join(root, "bin", "verifier"), "Verifier binary.")
	flag.StringVar(&c.out, "out", filepath.Join(root, "bench", "results", "latest.md"), "Where the table is written too.")
	flag.StringVar(&c.profiles, "profiles", "", "Directory to write CPU profiles of the API server, the manager and the verifiers to, taken during each verification run.")
	flag.IntVar(&c.rounds, "rounds", 4, "Rounds in which the verification ceilings and one verifier take turns, after one warm-up round, pooled. Even, so that the Lease ceilings and the verifier each come first in as many rounds.")
	flag.BoolVar(&c.burstOnly, "burst-only", false, "Measure only the reconcile burst, the manager's memory and a verifier where the burst left N enrollments, not the verification runs.")
	flag.BoolVar(&c.scaleOnly, "scale-only", false, "Measure only a verifier where the manager's burst left N enrollments (the burst without its ceiling): its start, first decisions, a storm over 2,000 and its memory.")
	flag.BoolVar(&c.verifyOnly, "verification-only", false, "Measure only the verification runs (after the reconcile burst that sets them up), not the verifier at scale nor API Priority and Fairness.")
	flag.BoolVar(&c.apfOnly, "apf-only", false, "Measure only what API Priority and Fairness buys another tenant during a flood of wrong codes.")
	flag.StringVar(&c.forward, "forward-listen", "", "Internal: serve as the hop ceiling's forwarder on this address, which the benchmark starts itself.")
	flag.StringVar(&c.forwardNamespace, "forward-namespace", "", "Internal: the forwarder's namespace.")
	flag.StringVar(&c.forwardKubeconfig, "forward-kubeconfig", "", "Internal: the forwarder's kubeconfig.")
	flag.Parse()
	if c.forward != "" {
		if err := forward(c.forwardKubeconfig, c.forwardNamespace, c.forward); err != nil {
			fmt.Fprintln(os.Stderr, "bench: forwarder:", err)
			os.Exit(1)
		}
		return
	}
	if c.rounds < 1 {
		fmt.Fprintln(os.Stderr, "bench: -rounds must be at least 1")
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// table collects the report's rows.
type table struct{ rows [][3]string }

// add adds a row and prints it.
func (t *table) add(what, value, note string) {
	t.rows = append(t.rows, [3]string{what, value, note})
	fmt.Printf("  %-58s %-22s %s\n", what, value, note)
}

// markdown renders the table as Markdown below header.
func (t *table) markdown(header string) string {
	var b strings.Builder
	b.WriteString(header)
	b.WriteString("\n| measure | value | note |\n|---|---|---|\n")
	for _, r := range t.rows {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r[0], r[1], r[2])
	}
	return b.String()
}

// run starts a local control plane, measures, and writes the table to c.out.
func run(c config) error {
	ctx := context.Background()
	for _, b := range []string{c.manager, c.verifier} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("binary %s not found: run 'make build'", b)
		}
	}
	if c.profiles != "" {
		if err := os.MkdirAll(c.profiles, 0o755); err != nil {
			return err
		}
	}
	fmt.Println("Starting etcd (fsync on) and kube-apiserver ...")
	env, err := controlplane.Start(controlplane.Options{Fsync: true, APIServerFlags: apiServerFlags,
		// The 100,000-enrollment runs hold two bursts' objects, over etcd's default quota of 2 GiB.
		EtcdFlags: map[string]string{"quota-backend-bytes": strconv.Itoa(8 << 30)}})
	if err != nil {
		return err
	}
	// Stopping the cluster stops its processes, then the control plane.
	cl := &devcluster.Cluster{Env: env, Kubeconfig: env.Kubeconfig}
	defer func() {
		if err := cl.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: stopping:", err)
		}
	}()
	b, err := newBench(ctx, c, env, cl)
	if err != nil {
		return err
	}

	var t table
	fmt.Println("Code check next to a bare HMAC ...")
	microBenchmarks(&t)
	if c.apfOnly {
		if err := b.startManager(ctx); err != nil {
			return err
		}
	} else {
		fmt.Printf("Reconcile burst of %d enrollments ...\n", c.n)
		if err := b.reconcileBurst(ctx, &t); err != nil {
			return fmt.Errorf("reconcile burst: %w", err)
		}
	}
	if !c.burstOnly && !c.apfOnly && !c.scaleOnly {
		fmt.Printf("Verification with %d clients ...\n", c.clients)
		if err := b.verification(ctx, &t); err != nil {
			return fmt.Errorf("verification: %w", err)
		}
	}
	if !c.apfOnly && !c.verifyOnly {
		fmt.Printf("A verifier where the burst left %d enrollments: its start, first decisions and a storm over %d ...\n", c.n, min(c.n, stormUsers))
		if err := b.verifierAtScale(ctx, &t); err != nil {
			return fmt.Errorf("verifier at scale: %w", err)
		}
	}
	if !c.burstOnly && !c.scaleOnly && !c.verifyOnly {
		fmt.Printf("API Priority and Fairness: another tenant's writes during a flood from %d clients ...\n", c.clients*8)
		if err := b.apfIsolation(ctx, &t); err != nil {
			return fmt.Errorf("APF isolation: %w", err)
		}
	}

	header := fmt.Sprintf("# kube2fa benchmark\n\n%s; %d CPUs; %s; %s; etcd with fsync on (production setting).\n"+
		"N=%d enrollments, C=%d clients, %d reconcilers, %v per verification run, %d rounds of ceiling and verifier.\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), version(filepath.Join(controlplane.BinDir(), procAPIServer), "--version"),
		firstLine(version(filepath.Join(controlplane.BinDir(), procEtcd), "--version")), c.n, c.clients, c.reconcilers, c.duration, c.rounds)
	md := t.markdown(header)
	if err := os.MkdirAll(filepath.Dir(c.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(c.out, []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Println()
	fmt.Print(md)
	fmt.Println("\nWritten to", c.out)
	return nil
}

// version returns what bin prints when run with args, or "unknown".
func version(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// firstLine returns s up to its first newline.
func firstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }
