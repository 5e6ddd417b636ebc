package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/devcluster"
	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/otp"
	"github.com/kube2fa/kube2fa/internal/render"
)

// user is one enrolled HOTP user: HOTP lets every request carry a fresh, valid code for its user, however
// long the run, and the check costs what a TOTP check costs (an HMAC per window step and one status write).
type user struct {
	name string
	// index is the user's place among the benchmark's users, which session affinity hashes.
	index   int
	key     []byte
	params  otp.Params
	counter uint64
}

// code is the user's next valid code.
func (u *user) code() string { return u.codeAt(u.counter) }

func (u *user) codeAt(counter uint64) string {
	c, _ := otp.Code(u.key, u.params.Algorithm, u.params.Digits, counter)
	return c
}

// accepted moves the user's counter past the code just accepted as the verifier does: past the last counter
// of the look-ahead window with the same code (one time in about 250,000 a code recurs in the window, and a
// code is accepted only once).
func (u *user) accepted() {
	code, next := u.code(), u.counter+1
	for c := u.counter + 1; c <= u.counter+v1alpha1.DefaultLookAhead; c++ {
		if u.codeAt(c) == code {
			next = c + 1
		}
	}
	u.counter = next
}

// runResult is what one run, verification or ceiling, measured.
type runResult struct {
	// decisions counts every answer; answered those that came within the run's window, which the rate is of.
	decisions, answered int
	window              time.Duration
	rate                float64
	latencies           []time.Duration
	writes              float64
	// requests are the API server's requests during the run, by verb and resource.
	requests map[string]float64
	errors   int
	// cpu is where the CPU went, per decision; fsync etcd's WAL fsync latency during the run.
	cpu   cpuShare
	fsync string
	// conflicts counts the status writes the API server refused with 409 (a decision's retry).
	conflicts float64
}

// pct returns the latency at fraction p of the sorted latencies: the one at index floor(n*p), the last at
// most, and 0 for a run without any.
func (r runResult) pct(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, int(float64(len(r.latencies))*p))]
}

// summary reads "p50 …, p95 …, p99 …".
func (r runResult) summary() string {
	return fmt.Sprintf("p50 %v, p95 %v, p99 %v", ms(r.pct(.50)), ms(r.pct(.95)), ms(r.pct(.99)))
}

// plus is r with more's measurements added: a run measured slice by slice.
func (r runResult) plus(more runResult) runResult {
	r.decisions += more.decisions
	r.answered += more.answered
	r.window += more.window
	r.rate = float64(r.answered) / r.window.Seconds()
	r.latencies = append(r.latencies, more.latencies...)
	slices.Sort(r.latencies)
	r.errors += more.errors
	r.cpu = r.cpu.plus(more.cpu)
	for k, v := range more.requests {
		if r.requests == nil {
			r.requests = map[string]float64{}
		}
		r.requests[k] += v
	}
	return r
}

// ms formats a duration in milliseconds with one decimal.
func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

// verification measures the verifier next to its ceilings, the API server making the writes the decisions
// make: one verifier taking turns with the ceilings, the latency at half its maximum rate next to the
// ceiling's at that rate, two verifiers with valid and with partly wrong codes, and ten.
func (b *bench) verification(ctx context.Context, t *table) error {
	ns, err := b.namespace(ctx, "storm")
	if err != nil {
		return err
	}
	if err := b.policy(ctx, ns, v1alpha1.MethodHOTP); err != nil {
		return err
	}
	users, err := b.enrolledUsers(ctx, ns, max(b.c.clients*32, 512))
	if err != nil {
		return err
	}
	if err := b.standForACluster(); err != nil {
		return err
	}
	defer b.standAlone()
	hop, err := b.startHop(ctx, ns)
	if err != nil {
		return err
	}
	a, rs, err := b.alternatingRounds(ctx, ns, users, hop.url)
	if err = errors.Join(err, b.stopHop(hop)); err != nil {
		return err
	}
	rs.report(t, b.saturating(), b.closedLoop())
	half := max(pool(rs.saturated).rate/2, 1)
	moderate, err := b.halfLoad(ctx, t, ns, users, a, half)
	if err != nil {
		return err
	}
	twos, err := b.twoVerifiers(ctx, t, ns, users, a)
	if err != nil {
		return err
	}
	tens, err := b.tenVerifiers(ctx, ns, users, a, half)
	if err != nil {
		return err
	}
	reportReplicas(t, pool(rs.closed), moderate, tens)
	reportUnanswered(t, slices.Concat(rs.saturated, rs.closed, twos, tens, []runResult{moderate}, rs.old, rs.minimal, rs.shaped, rs.busy, rs.hop))
	return b.stopVerifier(a)
}

// roundResults are the results of the rounds in which the ceilings and one verifier take turns, the warm-up
// round left out: each round's runs, and each round's ratios.
type roundResults struct {
	// old is the old path's ceiling, closed-loop; minimal, shaped and busy the Lease ceilings (minimalLease,
	// stateShaped, busyMinimal), hop the hop ceiling (hop.go), saturated the verifier, saturating; closed
	// the verifier, closed-loop.
	old, minimal, shaped, busy, hop, saturated, closed []runResult
	// leaseRatios: saturated to minimal (goal 1's bar); shapedRatios: saturated to shaped; busyRatios:
	// saturated to busy; hopRatios: saturated to hop; oldRatios: closed to old, like with like.
	leaseRatios, shapedRatios, busyRatios, hopRatios, oldRatios []float64
	// writes is the verifier's API writes per decision in the worst round, conflicts those refused.
	writes, conflicts float64
}

// alternatingRounds runs the ceilings and one verifier, verifier-a, round after round. The old path's
// ceiling runs while no verifier does (its writes would reach a verifier's watch of enrollments). The Lease
// ceilings, whose writes reach nobody, the hop ceiling (through the forwarder at hopURL) and the verifier
// with either load then take turns second by second (interleave), so that neither the machine's drift nor
// coming first after the verifier's start and warm-up falls on one more than another. Each writes on the
// very same users. Round 0 warms up and is not counted: in three runs of four without it, the first
// verifier run was the slowest, 6-20% below the later ones. verifier-a is left running.
func (b *bench) alternatingRounds(ctx context.Context, ns string, users []*user, hopURL string) (runningVerifier, roundResults, error) {
	var a runningVerifier
	var rs roundResults
	if err := b.warmHop(users, hopURL); err != nil {
		return a, rs, err
	}
	for r := 0; r <= b.c.rounds; r++ {
		if r > 0 {
			if err := b.stopVerifier(a); err != nil {
				return a, rs, err
			}
		}
		old, err := b.statusCeiling(ctx, fmt.Sprintf("ceiling-r%d", r), ns, users)
		if err != nil {
			return a, rs, err
		}
		if a, err = b.startVerifier(ctx, ns, procVerifierA); err != nil {
			return a, rs, err
		}
		if err := b.warm(users, func(*user) string { return a.url }); err != nil {
			return a, rs, err
		}
		minimal, err := b.leaseCeilingLoad(ctx, fmt.Sprintf("lease-ceiling-r%d", r), ns, users, minimalLease, b.saturating())
		if err != nil {
			return a, rs, err
		}
		shaped, err := b.leaseCeilingLoad(ctx, fmt.Sprintf("shaped-ceiling-r%d", r), ns, users, stateShaped, b.saturating())
		if err != nil {
			return a, rs, err
		}
		busy, err := b.leaseCeilingLoad(ctx, fmt.Sprintf("busy-ceiling-r%d", r), ns, users, busyMinimal, b.saturating())
		if err != nil {
			return a, rs, err
		}
		hop := b.hopLoad(fmt.Sprintf("hop-ceiling-r%d", r), users, hopURL, b.saturating())
		url := func(*user, int, int) string { return a.url }
		saturated := b.verifierLoad(fmt.Sprintf("verify-1-r%d", r), users, url, 0, b.saturating())
		closed := b.verifierLoad(fmt.Sprintf("verify-1-c%d-r%d", b.c.clients, r), users, url, 0, b.closedLoop())
		verifiers, err := b.interleave(fmt.Sprintf("round-r%d", r), minimal, shaped, busy, hop, saturated, closed)
		if err != nil {
			return a, rs, err
		}
		if r > 0 {
			rs.old, rs.minimal, rs.shaped = append(rs.old, old), append(rs.minimal, minimal.res), append(rs.shaped, shaped.res)
			rs.busy, rs.busyRatios = append(rs.busy, busy.res), append(rs.busyRatios, saturated.res.rate/busy.res.rate)
			rs.hop, rs.hopRatios = append(rs.hop, hop.res), append(rs.hopRatios, saturated.res.rate/hop.res.rate)
			rs.saturated, rs.closed = append(rs.saturated, saturated.res), append(rs.closed, closed.res)
			rs.leaseRatios = append(rs.leaseRatios, saturated.res.rate/minimal.res.rate)
			rs.shapedRatios = append(rs.shapedRatios, saturated.res.rate/shaped.res.rate)
			rs.oldRatios = append(rs.oldRatios, closed.res.rate/old.rate)
			writes, conflicts := decisionWritesIn(verifiers, saturated.res.decisions+closed.res.decisions)
			fmt.Printf("    round-r%d: %d decisions; the verifier's writes: %s\n", r, saturated.res.decisions+closed.res.decisions,
				writesList(verifiers))
			rs.writes, rs.conflicts = max(rs.writes, writes), rs.conflicts+conflicts // the worst round: each must write once
		}
	}
	return a, rs, nil
}

// report adds the rounds' rows: the medians of the verifier's and of the ceilings' rates, the medians of
// their ratios, the writes per decision of the worst run, and the CPU per decision.
func (rs roundResults) report(t *table, saturating, closedLoop offered) {
	one, closed := pool(rs.saturated), pool(rs.closed)
	old, minimal, shaped := pool(rs.old), pool(rs.minimal), pool(rs.shaped)
	t.add(fmt.Sprintf("Verification, 1 verifier, %d clients, valid codes", saturating.clients), fmt.Sprintf("%.0f /s", one.rate),
		one.summary()+"; the verifier's rate: clients enough to keep the control plane busy")
	t.add(fmt.Sprintf("Ceiling: a guarded update of a minimal Lease per user, protobuf, %d clients", saturating.clients),
		fmt.Sprintf("%.0f /s", minimal.rate), minimal.summary()+"; CPU per write: "+minimal.cpu.String())
	t.add("Verification ratio to the Lease ceiling", fmt.Sprintf("%.2f", one.rate/minimal.rate),
		fmt.Sprintf("bar: >= 0.9; over %d rounds, each: %s", len(rs.leaseRatios), ratioList(rs.leaseRatios)))
	t.add("Ceiling: the same update of a Lease holding what a state Lease holds (owner, state)",
		fmt.Sprintf("%.0f /s", shaped.rate), fmt.Sprintf("%s; %.2f of the minimal Lease's: what the state Lease's content costs; CPU per write: %s",
			shaped.summary(), shaped.rate/minimal.rate, shaped.cpu))
	t.add("Verification ratio to the state-shaped ceiling", fmt.Sprintf("%.2f", one.rate/shaped.rate),
		fmt.Sprintf("what the verifier's path costs over the raw write of what it writes; rounds: %s", ratioList(rs.shapedRatios)))
	busy := pool(rs.busy)
	t.add(fmt.Sprintf("Ceiling: the minimal Lease's update, each after %v of its client's CPU beside the load", clientWork),
		fmt.Sprintf("%.0f /s", busy.rate), fmt.Sprintf("%s; %.2f of the minimal Lease's: what CPU spent on the worker core costs a closed loop here, as a decision spends %.2f ms in the verifier",
			busy.summary(), busy.rate/minimal.rate, one.cpu.of(procVerifierA)))
	t.add("Verification ratio to the busy ceiling", fmt.Sprintf("%.2f", one.rate/busy.rate),
		fmt.Sprintf("what the verifier's path costs but for its CPU; rounds: %s", ratioList(rs.busyRatios)))
	hop := pool(rs.hop)
	t.add(fmt.Sprintf("Ceiling: the state-shaped Lease's update behind an HTTP hop to a process that decides nothing, %d clients", saturating.clients),
		fmt.Sprintf("%.0f /s", hop.rate), fmt.Sprintf("%s; %.2f of the minimal Lease's, %.2f of the state-shaped one's: the floor of any verifier beside the application here (same request, same libraries, the same write); CPU per write: %s",
			hop.summary(), hop.rate/minimal.rate, hop.rate/shaped.rate, hop.cpu))
	t.add("Verification ratio to the hop ceiling", fmt.Sprintf("%.2f", one.rate/hop.rate),
		fmt.Sprintf("what deciding costs over the hop and the write; rounds: %s", ratioList(rs.hopRatios)))
	t.add(fmt.Sprintf("Verification, 1 verifier, %d clients, valid codes", closedLoop.clients), fmt.Sprintf("%.0f /s", closed.rate),
		fmt.Sprintf("%s; %.2f of its rate with %d: each client waits out the verifier's hop too, so fewer writes are in flight",
			closed.summary(), closed.rate/one.rate, saturating.clients))
	t.add(fmt.Sprintf("Old path's ceiling: a status update of the enrollment per decision, %d clients", closedLoop.clients),
		fmt.Sprintf("%.0f /s", old.rate), old.summary()+"; CPU per write: "+old.cpu.String())
	t.add("Verification ratio to the old path's ceiling", fmt.Sprintf("%.2f", closed.rate/old.rate),
		fmt.Sprintf("bar: >= 2.5 (the old path's verifier reached 0.91 of it); %d clients each; rounds: %s", closedLoop.clients, ratioList(rs.oldRatios)))
	t.add("API writes per decision", fmt.Sprintf("%.3f", rs.writes), fmt.Sprintf("must be 1.0; %.0f refused with a conflict", rs.conflicts))
	t.add(fmt.Sprintf("CPU per decision, 1 verifier, %d clients (all processes)", saturating.clients), one.cpu.String(), "")
	t.add("kube-apiserver CPU per decision", fmt.Sprintf("%.2f ms", one.cpu.of(procAPIServer)),
		fmt.Sprintf("bar: <= 2.5 ms; the manager's: %.2f ms (it receives no decision)", one.cpu.of(procManager)))
}

// twoVerifiers starts a second verifier, verifier-b, next to a, runs the clients against both, with valid
// codes and then with 20% wrong codes, adds their rows, stops verifier-b, and returns the two runs.
func (b *bench) twoVerifiers(ctx context.Context, t *table, ns string, users []*user, a runningVerifier) ([]runResult, error) {
	bv, err := b.startVerifier(ctx, ns, procVerifierB)
	if err != nil {
		return nil, err
	}
	two, err := b.load(ctx, "verify-2", users, []string{a.url, bv.url}, 0, b.closedLoop())
	if err != nil {
		return nil, err
	}
	t.add("Verification, 2 verifiers, valid codes", fmt.Sprintf("%.0f /s", two.rate), two.summary())
	mixed, err := b.load(ctx, "verify-2-mixed", users, []string{a.url, bv.url}, 0.2, b.closedLoop())
	if err != nil {
		return nil, err
	}
	t.add("Verification, 2 verifiers, 20% wrong codes", fmt.Sprintf("%.0f /s", mixed.rate),
		fmt.Sprintf("%s; %.3f writes/decision", mixed.summary(), mixed.writes))
	return []runResult{two, mixed}, b.stopVerifier(bv)
}

// replicas is how many verifiers tenVerifiers runs.
const replicas = 10

// tenVerifiers starts replicas-1 more verifiers next to a and runs the clients against all of them: with
// session affinity (each user's requests to one replica, as when the application's sessions stick to its
// replicas, each with its verifier beside it) closed-loop and at rate half, and without (each user's
// requests going round the replicas, the worst case for a replica's memory of its own writes) closed-loop.
// Each replica decides once for each of its users first, unmeasured, as one verifier does (warm). It stops
// the extra verifiers and returns the three runs.
func (b *bench) tenVerifiers(ctx context.Context, ns string, users []*user, a runningVerifier, half float64) ([]runResult, error) {
	vs, urls := []runningVerifier{}, []string{a.url}
	defer func() {
		for _, v := range vs {
			_ = b.stopVerifier(v)
		}
	}()
	for i := 2; i <= replicas; i++ {
		v, err := b.startVerifier(ctx, ns, fmt.Sprintf("verifier-%d", i))
		if err != nil {
			return nil, err
		}
		vs, urls = append(vs, v), append(urls, v.url)
	}
	affinity := func(u *user, _, _ int) string { return urls[u.index%len(urls)] }
	if err := b.warm(users, func(u *user) string { return affinity(u, 0, 0) }); err != nil {
		return nil, err
	}
	round := func(_ *user, w, i int) string { return urls[(i*7+w)%len(urls)] } // 7: coprime to 10, unlike the users per client
	var runs []runResult
	for _, r := range []struct {
		name string
		url  func(u *user, w, i int) string
		load offered
	}{
		{fmt.Sprintf("verify-%d", replicas), affinity, b.closedLoop()},
		{fmt.Sprintf("verify-%d-half", replicas), affinity, b.at(half)},
		{fmt.Sprintf("verify-%d-round", replicas), round, b.closedLoop()},
	} {
		run, err := b.loadVia(ctx, r.name, users, r.url, 0, r.load)
		if err != nil {
			return nil, err
		}
		runs = append(runs, run)
	}
	return runs, nil
}

// reportReplicas adds the rows that compare ten verifiers with one: closed-loop with and without session
// affinity, and at the same offered rate.
func reportReplicas(t *table, one, oneAtHalf runResult, tens []runResult) {
	closed, atHalf, round := tens[0], tens[1], tens[2]
	t.add(fmt.Sprintf("Verification, %d verifiers, valid codes, each user on one replica", replicas),
		fmt.Sprintf("%.0f /s", closed.rate), fmt.Sprintf("%s; %.3f writes/decision; %.2f of 1 verifier's; CPU per decision %s",
			closed.summary(), closed.writes, closed.rate/one.rate, closed.cpu))
	t.add(fmt.Sprintf("%d verifiers to 1 at the same offered rate (%.0f /s)", replicas, oneAtHalf.rate),
		fmt.Sprintf("%.2f", atHalf.rate/oneAtHalf.rate), fmt.Sprintf("bar: >= 0.9; %d verifiers: %s", replicas, atHalf.summary()))
	t.add(fmt.Sprintf("Verification, %d verifiers, each user's requests round the replicas", replicas),
		fmt.Sprintf("%.0f /s", round.rate), fmt.Sprintf("%s; %.3f writes/decision (%.0f refused with a conflict); %.2f of 1 verifier's; CPU per decision %s",
			round.summary(), round.writes, round.conflicts, round.rate/one.rate, round.cpu))
}

// halfLoad offers half the maximum rate, half, to verifier a alone (which alone has served its users, as
// with session affinity), then the same rate to the Lease ceiling while a idles; it adds the latency rows of
// both and returns the verifier's run.
func (b *bench) halfLoad(ctx context.Context, t *table, ns string, users []*user, a runningVerifier, half float64) (runResult, error) {
	moderate, err := b.load(ctx, "verify-half", users, []string{a.url}, 0, b.at(half))
	if err != nil {
		return runResult{}, err
	}
	t.add(fmt.Sprintf("Latency at half the maximum (%.0f /s offered, 1 verifier)", half), "p99 "+ms(moderate.pct(.99)),
		fmt.Sprintf("p50 %v; bar: p99 <= 25ms; %s", ms(moderate.pct(.50)), moderate.fsync))
	ceiling, err := b.leaseCeilingLoad(ctx, "lease-ceiling-half", ns, users, minimalLease, b.at(half))
	if err != nil {
		return runResult{}, err
	}
	ceilHalf, err := b.measure(ceiling)
	if err != nil {
		return runResult{}, err
	}
	t.add("Ceiling latency at the same offered rate (raw Lease updates)", "p99 "+ms(ceilHalf.pct(.99)),
		fmt.Sprintf("p50 %v: what the API server and etcd take for the one write a decision needs; %s",
			ms(ceilHalf.pct(.50)), ceilHalf.fsync))
	return moderate, nil
}

// reportUnanswered adds a row for the requests answered other than expected (by a verifier: accepted or
// rejected as the code was; by the API server, to a ceiling: written), if there were any in runs. No rate
// counts them.
func reportUnanswered(t *table, runs []runResult) {
	errs := 0
	for _, r := range runs {
		errs += r.errors
	}
	if errs > 0 {
		t.add("Requests answered other than expected", fmt.Sprint(errs), "should be 0; no rate counts them")
	}
}

// enrolledUsers creates n HOTP enrollments, waits for the manager's Secrets, and confirms them directly in
// status (the benchmark's setup, not what it measures).
func (b *bench) enrolledUsers(ctx context.Context, ns string, n int) ([]*user, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the watch, should the enrollments not all get Ready
	ready, err := b.watchReady(ctx, ns, n)
	if err != nil {
		return nil, err
	}
	if _, err := parallel(n, 16, func(i int) error { return b.client.Create(ctx, newEnrollment(ns, i, v1alpha1.MethodHOTP)) }); err != nil {
		return nil, err
	}
	select {
	case <-ready:
	case <-time.After(5 * time.Minute):
		return nil, fmt.Errorf("setup: enrollments not Ready")
	}
	users := make([]*user, n)
	_, err = parallel(n, 16, func(i int) error {
		e := &v1alpha1.UserEnrollment{}
		if err := b.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("user-%05d", i)}, e); err != nil {
			return err
		}
		s := &corev1.Secret{}
		if err := b.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.SecretName(e.Name)}, s); err != nil {
			return err
		}
		p, k, err := render.ParseOTPSecret(s)
		if err != nil {
			return err
		}
		enrollment.Confirm(&e.Status, time.Now())
		enrollment.SetEnrolled(&e.Status, e.Generation)
		users[i] = &user{name: e.Spec.User, index: i, key: k, params: p}
		return b.client.Status().Update(ctx, e, client.FieldOwner(verifierFieldOwner))
	})
	return users, err
}

// runningVerifier is a verifier process the benchmark drives.
type runningVerifier struct {
	*devcluster.Process
	name, url string
}

// stopVerifier stops a verifier and no longer meters it.
func (b *bench) stopVerifier(v runningVerifier) error {
	delete(b.procs, v.name)
	delete(b.pprof, v.name)
	return v.Stop()
}

// startVerifier starts a verifier named name for the policy "webapp" in ns, with pprof, meters it, and
// waits until it is ready.
func (b *bench) startVerifier(ctx context.Context, ns, name string) (runningVerifier, error) {
	addr, pprof := devcluster.FreeAddr(), devcluster.FreeAddr()
	p, err := b.cluster.StartVerifier(name, b.c.verifier, "webapp", ns, addr, "--kube-api-qps=-1",
		"--pprof-listen="+pprof)
	if err != nil {
		return runningVerifier{}, err
	}
	b.procs[name] = p.PID()
	b.pprof[name] = pprof
	if b.asCluster {
		if err := pin([]int{workerCPU}, p.PID()); err != nil {
			return runningVerifier{}, errors.Join(err, p.Stop())
		}
	}
	fmt.Printf("  %s: http://%s, profiles at http://%s/debug/pprof/\n", name, addr, pprof)
	return runningVerifier{Process: p, name: name, url: "http://" + addr}, nil
}

// offered is the load a run offers: clients workers, closed-loop (each sends its next request as soon as
// its last is answered) when rate is 0, else rate requests per second in total.
type offered struct {
	clients int
	rate    float64
}

// closedLoop is the configured clients, closed-loop.
func (b *bench) closedLoop() offered { return offered{clients: b.c.clients} }

// saturating is twice the configured clients, closed-loop: enough to keep the control plane busy through a
// verifier's hop. With the configured 16, the hop's few milliseconds leave too few writes in flight for
// that (README, Performance), and a run would measure the clients' patience rather than what the path can
// do; a raw write, without the hop, reaches the same rate with either.
func (b *bench) saturating() offered { return offered{clients: 2 * b.c.clients} }

// at is the configured clients offering rate requests per second in total.
func (b *bench) at(rate float64) offered { return offered{clients: b.c.clients, rate: rate} }

// drive runs o's workers for d, calling do(worker, i) for each request. Closed-loop, they run as fast as
// answers come; at a rate, requests are offered at that rate and latency is measured from when each was due
// (no coordinated omission). do reports whether the answer was the expected one. The rate counts the
// expected answers that came within d (a refused write is cheap, and is nobody's throughput either): the requests still in flight then are waited for, and their latencies kept,
// but the time they take to drain, while fewer and fewer are in flight, is nobody's throughput (a load with
// longer latencies would pay more for it, the more so the shorter d).
func (b *bench) drive(o offered, d time.Duration, do func(w, i int) bool) runResult {
	c, rate := o.clients, o.rate
	var mu sync.Mutex
	var res runResult
	var seq atomic.Int64
	var inTime atomic.Int64
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range c {
		wg.Go(func() {
			var lat []time.Duration
			errs := 0
			for i := 0; time.Now().Before(deadline); i++ {
				due := time.Now()
				if rate > 0 {
					due = start.Add(time.Duration(float64(seq.Add(1)-1) / rate * float64(time.Second)))
					if !due.Before(deadline) {
						break
					}
					time.Sleep(time.Until(due))
				}
				ok := do(w, i)
				if !ok {
					errs++
				}
				lat = append(lat, time.Since(due))
				if ok && time.Now().Before(deadline) {
					inTime.Add(1)
				}
			}
			mu.Lock()
			res.latencies = append(res.latencies, lat...)
			res.errors += errs
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(res.latencies)
	res.decisions = len(res.latencies)
	res.answered, res.window = int(inTime.Load()), d
	res.rate = float64(res.answered) / d.Seconds()
	return res
}

// load runs the clients against the verifiers; a fraction wrong of the codes are wrong.
func (b *bench) load(ctx context.Context, run string, users []*user, urls []string, wrong float64, o offered) (runResult, error) {
	return b.loadVia(ctx, run, users, func(_ *user, w, i int) string { return urls[(i+w)%len(urls)] }, wrong, o)
}

// loadVia is load with the verifier of each request chosen by url(user, worker, request).
func (b *bench) loadVia(ctx context.Context, run string, users []*user, url func(u *user, w, i int) string, wrong float64, o offered) (runResult, error) {
	return b.measure(b.verifierLoad(run, users, url, wrong, o))
}

// verifierLoad is the load of clients asking the verifier at url(user, worker, request) to check each
// user's next code, a fraction wrong of them wrong. Its result has the API writes per decision.
func (b *bench) verifierLoad(run string, users []*user, url func(u *user, w, i int) string, wrong float64, o offered) *load {
	l := httpLoad(run, users, o, func(hc *http.Client, u *user, w, i int, unexpected *answers) bool {
		return verifyOnce(hc, url(u, w, i), u, wrong > 0 && i%int(1/wrong) == 0, unexpected)
	})
	closeAndPrint := l.done
	l.done = func(res *runResult) {
		closeAndPrint(res)
		if res.requests != nil { // measured alone; interleaved, the API server's counters mix the loads' requests
			res.writes, res.conflicts = decisionWritesIn(res.requests, res.decisions)
		}
	}
	return l
}

// httpLoad is a load whose requests are HTTP requests, made by do with hc, whose connections are kept alive
// for all of o's clients; do notes the answers it did not expect, which the load prints once it has run.
func httpLoad(run string, users []*user, o offered, do func(hc *http.Client, u *user, w, i int, unexpected *answers) bool) *load {
	tr := &http.Transport{MaxIdleConnsPerHost: o.clients * 2}
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	unexpected := &answers{}
	l := newLoad(run, users, o, func(u *user, w, i int) bool { return do(hc, u, w, i, unexpected) })
	l.done = func(*runResult) {
		tr.CloseIdleConnections()
		unexpected.print()
	}
	return l
}

// verifyOnce asks the verifier at url to check the user's next code, or a wrong code when bad, and reports
// whether it answered as expected (accepted, or rejected when bad); it notes any other answer.
func verifyOnce(hc *http.Client, url string, u *user, bad bool, unexpected *answers) bool {
	code, want := u.code(), http.StatusOK
	if bad {
		code, want = "00000000"[:len(code)], http.StatusUnauthorized
	}
	if !post(hc, url+"/v1/verify", u, code, want, unexpected) {
		return false
	}
	if !bad {
		u.accepted()
	}
	return true
}

// post posts user u's code to url and reports whether the answer's status is want; it notes any other
// answer.
func post(hc *http.Client, url string, u *user, code string, want int, unexpected *answers) bool {
	body := fmt.Sprintf(`{"user":%q,"code":%q}`, u.name, code)
	r, err := hc.Post(url, "application/json", bytes.NewBufferString(body))
	if err != nil {
		unexpected.note(err.Error())
		return false
	}
	answer, _ := io.ReadAll(io.LimitReader(r.Body, 200))
	_, _ = io.Copy(io.Discard, r.Body) // drained, so the connection is reused
	_ = r.Body.Close()
	if r.StatusCode == want {
		return true
	}
	unexpected.note(fmt.Sprintf("%d %s", r.StatusCode, bytes.TrimSpace(answer)))
	return false
}

// warm has a verifier decide once for every user, unmeasured, the user's verifier at url(user): its first
// decision for a user reads the user's enrollment, key and state Lease, as the ceilings read or create their
// objects before they are measured. What a first decision costs has rows of its own (verifierAtScale).
func (b *bench) warm(users []*user, url func(u *user) string) error {
	return b.warmWith(users, func(hc *http.Client, u *user, unexpected *answers) error {
		if !verifyOnce(hc, url(u), u, false, unexpected) {
			return fmt.Errorf("warming %s up: an unexpected answer for %s", url(u), u.name)
		}
		return nil
	})
}

// warmWith makes one request for every user with once, unmeasured, with the clients' parallelism, and prints
// the answers once did not expect.
func (b *bench) warmWith(users []*user, once func(hc *http.Client, u *user, unexpected *answers) error) error {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: b.c.clients}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	var unexpected answers
	_, err := parallel(len(users), b.c.clients, func(i int) error { return once(hc, users[i], &unexpected) })
	unexpected.print()
	return err
}

// answers counts the answers a run did not expect, by answer, to print what went wrong.
type answers struct {
	mu    sync.Mutex
	count map[string]int
}

func (a *answers) note(answer string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.count == nil {
		a.count = map[string]int{}
	}
	a.count[answer]++
}

func (a *answers) print() {
	for answer, n := range a.count {
		fmt.Printf("      unexpected answer, %d times: %s\n", n, answer)
	}
}

// decisionWrites are the API requests that record decisions: the state Lease's update (its creation, on a
// user's first decision) and, on a transition, the enrollment's conditions.
var decisionWrites = []string{"PUT leases", "POST leases", "PUT userenrollments/status"}

// decisionWritesIn returns the writes per decision that the API requests d (a diff of the API server's
// counters) hold for n decisions, and how many of them were refused with a conflict.
func decisionWritesIn(d map[string]float64, n int) (writes, conflicts float64) {
	for _, w := range decisionWrites {
		writes += d[w] / float64(max(n, 1))
		conflicts += d["conflict "+w]
	}
	return writes, conflicts
}

// writesList reads "PUT leases 11021, PUT userenrollments/status 3": the decision writes among the API
// requests d, and those refused with a conflict.
func writesList(d map[string]float64) string {
	var parts []string
	for _, w := range decisionWrites {
		for _, k := range []string{w, "conflict " + w} {
			if d[k] != 0 {
				parts = append(parts, fmt.Sprintf("%s %.0f", k, d[k]))
			}
		}
	}
	return strings.Join(parts, ", ")
}

// statusCeiling: the same clients, split over the users as load splits them, each decision written as a
// status update of the user's enrollment, the way every decision was recorded before state Leases (the old
// path, kept for the comparison): straight to the API server, closed-loop, as the verifier's field manager.
// Each write changes a condition's message, so that the API server cannot skip it.
func (b *bench) statusCeiling(ctx context.Context, run, ns string, users []*user) (runResult, error) {
	current := map[string]*v1alpha1.UserEnrollment{}
	for _, u := range users {
		e := &v1alpha1.UserEnrollment{}
		if err := b.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: u.name}, e); err != nil {
			return runResult{}, err
		}
		e.ManagedFields = nil // as the verifier sends them (its cache drops them): the server keeps its own
		current[u.name] = e
	}
	var writes atomic.Int64
	return b.measure(newLoad(run, users, b.closedLoop(), func(u *user, _, _ int) bool {
		e := current[u.name]
		meta.SetStatusCondition(&e.Status.Conditions, metav1.Condition{Type: "BenchDecision", Status: metav1.ConditionTrue,
			Reason: "Recorded", Message: fmt.Sprintf("decision %d at %s", writes.Add(1), time.Now().UTC().Format(time.RFC3339Nano))})
		if err := b.client.Status().Update(ctx, e, client.FieldOwner(verifierFieldOwner)); err != nil {
			return false
		}
		return true
	}))
}

// leaseShape is what the Leases of a Lease ceiling hold.
type leaseShape int

const (
	// minimalLease: two annotations, no owner and no labels: the cheapest durable, guarded write of per-user
	// state the API server offers, the bar a state model built on it must come near (goal 1 of #13).
	minimalLease leaseShape = iota
	// stateShaped: what a state Lease holds (render.StateLease: its enrollment as controller and the state
	// annotation), under a name as long as a state Lease's: the raw write of what a decision writes, as the
	// old path's ceiling is the raw write of the enrollment's status.
	stateShaped
	// busyMinimal: the minimal Lease, each write made after clientWork of its client's CPU on the worker
	// core, about what a decision costs the verifier there: what that CPU alone costs a closed loop on this
	// machine, whatever it is spent on.
	busyMinimal
)

// clientWork is the CPU a busyMinimal ceiling's client spends before each write: about a decision's CPU in
// the verifier (0.3-0.45 ms in the runs of 2026-11-30).
const clientWork = 300 * time.Microsecond

// leaseCeilingLoad: the users, split over o's clients as load splits them, each user's decision written to
// a Lease of its own (created once, on first use), shaped as shape says, with the resourceVersion it read,
// as protobuf, resetting its managedFields (as a state Lease is written: see render.SetState).
func (b *bench) leaseCeilingLoad(ctx context.Context, run, ns string, users []*user, shape leaseShape, o offered) (*load, error) {
	leases := make(map[*user]*ceilingLease, len(users))
	for _, u := range users {
		l, err := b.ceilingLease(ctx, ns, u, shape)
		if err != nil {
			return nil, err
		}
		leases[u] = l
	}
	api := b.proto.CoordinationV1().Leases(ns)
	ceiling := newLoad(run, users, o, func(u *user, _, _ int) bool {
		if shape == busyMinimal {
			spin(clientWork)
		}
		l := leases[u] // each user is one client's alone: no two writes of one Lease race
		if err := l.succeed(time.Now()); err != nil {
			return false
		}
		updated, err := api.Update(ctx, l.Lease, metav1.UpdateOptions{})
		if err != nil {
			return false
		}
		l.Lease = updated
		return true
	})
	ceiling.own = "PUT leases"
	return ceiling, nil
}

// spin keeps the calling goroutine's CPU busy for d: work, not a wait, as a decision's is in the verifier.
func spin(d time.Duration) {
	for start := time.Now(); time.Since(start) < d; {
	}
}

// ceilingLease is a user's Lease in a Lease ceiling, and the verification state it holds when state-shaped.
type ceilingLease struct {
	*coordinationv1.Lease
	state *v1alpha1.VerificationState
}

// ceilingLease reads, or creates, user u's Lease of the given shape in ns, for the Lease ceiling of that
// shape: each ceiling's Leases are its own, as another load's writes would make its versions stale.
func (b *bench) ceilingLease(ctx context.Context, ns string, u *user, shape leaseShape) (*ceilingLease, error) {
	load := map[leaseShape]string{minimalLease: "state", busyMinimal: "busy", stateShaped: "ceiling"}[shape]
	return ceilingLeaseOf(ctx, b.client, b.proto.CoordinationV1().Leases(ns), ns, u.name, shape, load)
}

// ceilingLeaseOf reads, or creates in leases (of namespace ns), the Lease of the given shape that load
// writes for user: a minimal one named load-user, or a state-shaped one, controlled by the user's enrollment
// (read with enrollments), named as the state Lease of a policy named for the load.
func ceilingLeaseOf(ctx context.Context, enrollments client.Reader, leases coordinationclient.LeaseInterface, ns, user string,
	shape leaseShape, load string) (*ceilingLease, error) {
	want := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: load + "-" + user, ManagedFields: render.Untracked()}}
	e := &v1alpha1.UserEnrollment{}
	if shape == stateShaped {
		if err := enrollments.Get(ctx, client.ObjectKey{Namespace: ns, Name: user}, e); err != nil {
			return nil, err
		}
		var err error
		if want, err = render.StateLease(e, v1alpha1.VerificationState{Key: e.Status.SecretUID}); err != nil {
			return nil, err
		}
		want.Name = render.StateLeaseName(e.Spec.PolicyRef.Name+"-"+load, e.Spec.User) // not the verifier's
	}
	l, err := leases.Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l, err = leases.Create(ctx, want, metav1.CreateOptions{})
	}
	if err != nil {
		return nil, err
	}
	if shape != stateShaped {
		return &ceilingLease{Lease: l}, nil
	}
	st, err := render.ParseState(l, e)
	return &ceilingLease{Lease: l, state: st}, err
}

// succeed records in l what an accepted decision records: the next counter (so that every write changes the
// object, as a decision's does: the API server skips writing an unchanged one) and the time of success.
func (l *ceilingLease) succeed(now time.Time) error {
	if l.state != nil {
		l.state.HOTPCounter = ptr.To(ptr.Deref(l.state.HOTPCounter, 0) + 1)
		l.state.LastSuccessAt = &metav1.Time{Time: now}
		return render.SetState(l.Lease, *l.state)
	}
	next, _ := strconv.ParseInt(l.Annotations["twofactor.kube2fa.io/hotp-counter"], 10, 64)
	metav1.SetMetaDataAnnotation(&l.ObjectMeta, "twofactor.kube2fa.io/hotp-counter", strconv.FormatInt(next+1, 10))
	metav1.SetMetaDataAnnotation(&l.ObjectMeta, "twofactor.kube2fa.io/last-success", now.UTC().Format(time.RFC3339))
	l.ManagedFields = render.Untracked()
	return nil
}

// A load is one run's work: its clients, each with users of its own (so no two requests in flight are for
// one user), and the request do makes for a user (i counts the worker's requests). It is measured in one go
// (measure) or slice by slice, by turns with other loads (interleave); each slice adds to its result.
type load struct {
	run   string
	offer offered
	mine  [][]*user
	sent  []int
	do    func(u *user, w, i int) bool
	// own, when set, is the API request each of the load's requests is (as the API server counts them), for
	// a ceiling: interleaved, the rest of the requests counted is the verifiers'.
	own string
	// done, when set, completes the result once every slice has run.
	done func(res *runResult)
	res  runResult
}

// newLoad splits users over o's clients.
func newLoad(run string, users []*user, o offered, do func(u *user, w, i int) bool) *load {
	mine := make([][]*user, o.clients)
	for i, u := range users {
		mine[i%o.clients] = append(mine[i%o.clients], u)
	}
	return &load{run: run, offer: o, mine: mine, sent: make([]int, o.clients), do: do}
}

// measure runs l in one go, once the control plane is idle, for the configured duration; its result
// carries the CPU per decision and etcd's fsync latency, and with -profiles CPU profiles are taken meanwhile.
func (b *bench) measure(l *load) (runResult, error) {
	b.settle()
	before, err := b.requests()
	if err != nil {
		return runResult{}, err
	}
	fsyncs := b.fsyncs()
	profiled := b.profile(l.run, b.c.duration)
	b.slice(l, b.c.duration)
	l.res.fsync = fsyncs()
	profiled()
	after, err := b.requests()
	l.res.requests = diff(after, before)
	return l.finish(), err
}

// turns is about how many slices each load of an interleaved run takes, the configured duration split
// between them: at least this many, in whole Latin squares (16 for four loads, 20 for five).
const turns = 16

// interleave runs the loads by turns, once the control plane is idle, each for a turns-th of the configured
// duration at a time, so that the machine's drift falls on each alike: between runs a few seconds apart,
// the control plane's speed moved by up to 70% here. A slice may also pay for what the one before it left
// behind (the API server's garbage, its connections' state), so the turns follow a balanced Latin square
// (williams): each load comes in each place of a turn, and after each other load, equally often. It
// returns the API requests made meanwhile but for the ceilings' own (load.own): the verifiers'. With
// -profiles, one CPU profile spans the whole (named name).
func (b *bench) interleave(name string, loads ...*load) (map[string]float64, error) {
	b.settle()
	before, err := b.requests()
	if err != nil {
		return nil, err
	}
	profiled := b.profile(name, time.Duration(len(loads))*b.c.duration)
	square := williams(len(loads))
	n := (turns + len(square) - 1) / len(square) * len(square) // whole squares: every order as often
	for t := range n {
		for _, i := range square[t%len(square)] {
			b.slice(loads[i], b.c.duration/time.Duration(n))
		}
	}
	profiled()
	after, err := b.requests()
	if err != nil {
		return nil, err
	}
	rest := diff(after, before)
	for _, l := range loads {
		if l.own != "" {
			rest[l.own] -= float64(l.res.decisions)
		}
		l.finish()
	}
	return rest, nil
}

// williams returns a balanced Latin square of order n (Williams, 1949): n orders of 0..n-1 in which each
// comes in each place once and, for even n, right after each other once. For odd n it returns the square
// and its mirror image, 2n orders, which balance that way together.
func williams(n int) [][]int {
	first := make([]int, n)
	for i := range n { // 0, 1, n-1, 2, n-2, ...
		switch {
		case i == 0:
			first[i] = 0
		case i%2 == 1:
			first[i] = (i + 1) / 2
		default:
			first[i] = n - i/2
		}
	}
	var square [][]int
	for r := range n {
		row := make([]int, n)
		for i, v := range first {
			row[i] = (v + r) % n
		}
		square = append(square, row)
	}
	if n%2 == 1 {
		for r := range n {
			mirror := slices.Clone(square[r])
			slices.Reverse(mirror)
			square = append(square, mirror)
		}
	}
	return square
}

// slice runs l for d and adds what it measured to l's result.
func (b *bench) slice(l *load, d time.Duration) {
	cpu := b.cpuMeter()
	res := b.drive(l.offer, d, func(w, _ int) bool {
		i := l.sent[w] // worker w's alone
		l.sent[w]++
		return l.do(l.mine[w][i%len(l.mine[w])], w, i)
	})
	res.cpu = cpu.since(res.decisions)
	l.res = l.res.plus(res)
}

// finish completes l's result and prints it.
func (l *load) finish() runResult {
	if l.done != nil {
		l.done(&l.res)
	}
	r := l.res
	fmt.Printf("    %s: %.0f /s, %s; %s; CPU per decision %v; %d unexpected answers\n", l.run, r.rate, r.summary(), r.fsync, r.cpu, r.errors)
	return r
}

// pool is the runs taken as one: their answers over their windows, all their latencies, all their CPU.
// Pooled, a round in which the machine was slow counts for what it measured, no more: a ratio of pooled
// rates weighs every slice of every round alike.
func pool(runs []runResult) runResult {
	var all runResult
	for _, r := range runs {
		all = all.plus(r)
	}
	return all
}

// ratioList reads "0.93, 0.92, 0.95".
func ratioList(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, ", ")
}

// verifierFieldOwner is the field manager the verifier's writes carry (client-go's default: the binary's
// name). The benchmark's own status writes use it so the enrollments look as in production.
const verifierFieldOwner = "verifier"

// cpuMeter meters the control plane's and kube2fa's processes, and the benchmark's own.
func (b *bench) cpuMeter() *cpuMeter {
	order := []string{procAPIServer, procEtcd, procManager, procVerifierA, procVerifierB, procVerifierScale, procVerifierStorm}
	for i := 2; i <= replicas; i++ {
		order = append(order, fmt.Sprintf("verifier-%d", i))
	}
	return newCPUMeter(b.procs, append(order, procHop, procBench)...)
}

// microBenchmarks runs the code check next to a bare HMAC of the same algorithm, in this process.
func microBenchmarks(t *table) {
	key := []byte("12345678901234567890")
	p := otp.Params{Method: v1alpha1.MethodTOTP, Algorithm: v1alpha1.AlgorithmSHA1, Digits: 6, PeriodSeconds: 30}
	now := time.Now()
	check := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			otp.CheckTOTP(key, p, "000000", now, 1, nil)
		}
	})
	bare := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		var counter [8]byte
		for b.Loop() {
			m := hmac.New(sha1.New, key)
			binary.BigEndian.PutUint64(counter[:], 42)
			m.Write(counter[:])
			m.Sum(nil)
		}
	})
	t.add("Code check: TOTP SHA1, skew 1 (3 steps)", fmt.Sprintf("%d ns/op, %d allocs/op", check.NsPerOp(), check.AllocsPerOp()), "")
	t.add("Bare HMAC-SHA1 of one counter", fmt.Sprintf("%d ns/op, %d allocs/op", bare.NsPerOp(), bare.AllocsPerOp()),
		fmt.Sprintf("check = %.1f HMACs", float64(check.NsPerOp())/float64(max(bare.NsPerOp(), 1))))
}
