package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/internal/render"
)

// stormUsers is how many of the burst's N users the verifier at scale serves: a login storm over 2,000 of
// them, whatever N.
const stormUsers = 2000

// verifierAtScale measures a verifier for the burst's policy, which holds N enrollments: how soon it is
// ready after its start, what a user's first decision costs (a confirmation, for which the verifier finds
// the enrollment by listing the user's), and, on a replica started afresh, its memory and rate during a
// login storm over stormUsers of them, each user's first login reading the enrollment and key by name.
func (b *bench) verifierAtScale(ctx context.Context, t *table) error {
	n := min(stormUsers, b.c.n)
	users, err := b.burstUsers(ctx, n)
	if err != nil {
		return err
	}
	first, ready, err := b.startTimed(ctx, procVerifierScale)
	if err != nil {
		return err
	}
	confirms, err := b.confirmAll(users, first.url)
	if err != nil {
		return err
	}
	if err := b.stopVerifier(first); err != nil {
		return err
	}
	second, again, err := b.startTimed(ctx, procVerifierStorm)
	if err != nil {
		return err
	}
	idle := procMemory(second.PID())
	storm, err := b.load(ctx, "storm at scale", users, []string{second.url}, 0, b.closedLoop())
	if err != nil {
		return err
	}
	warm, err := b.load(ctx, "storm at scale, again", users, []string{second.url}, 0, b.closedLoop())
	if err != nil {
		return err
	}
	peak := procMemory(second.PID()).peak
	heap := heapAfterGC("http://" + b.pprof[procVerifierStorm])
	b.saveHeapProfile("storm", procVerifierStorm)
	if err := b.stopVerifier(second); err != nil {
		return err
	}
	t.add(fmt.Sprintf("Verifier ready after its start, %d enrollments in its policy", b.c.n),
		fmt.Sprintf("%.2fs (restarted: %.2fs)", ready.Seconds(), again.Seconds()), "bar: <= 5 s at N=100,000")
	t.add(fmt.Sprintf("A user's first decision (confirmation), %d users of %d", n, b.c.n),
		fmt.Sprintf("%.0f /s, %s", confirms.rate, confirms.summary()),
		fmt.Sprintf("finds the enrollment by a LIST the API server filters; CPU per decision %v; requests per decision: %s",
			confirms.cpu, breakdown(confirms.requests, confirms.decisions)))
	for _, r := range []struct {
		what string
		res  runResult
	}{{"on a restarted verifier", storm}, {"again (every user remembered)", warm}} {
		t.add(fmt.Sprintf("Login storm over %d users of %d, %s", n, b.c.n, r.what),
			fmt.Sprintf("%.0f /s, %s", r.res.rate, r.res.summary()), fmt.Sprintf("CPU per decision %v; requests per decision: %s",
				r.res.cpu, breakdown(r.res.requests, r.res.decisions)))
	}
	t.add(fmt.Sprintf("Verifier peak RSS during the storm, %d enrollments in its policy", b.c.n), mib(peak),
		fmt.Sprintf("bar: <= 64 MiB at N=100,000; RSS when ready %s (anonymous %s, file %s), Go heap after the storm and a GC %s",
			mib(idle.current), mib(idle.anon), mib(idle.file), mib(heap)))
	return nil
}

// burstUsers reads the keys of the first n of the burst's enrollments (HOTP, unconfirmed).
func (b *bench) burstUsers(ctx context.Context, n int) ([]*user, error) {
	users := make([]*user, n)
	_, err := parallel(n, 16, func(i int) error {
		e := newEnrollment(b.burstNS, i, "")
		s := &corev1.Secret{}
		if err := b.client.Get(ctx, client.ObjectKey{Namespace: b.burstNS, Name: render.SecretName(e.Name)}, s); err != nil {
			return err
		}
		p, k, err := render.ParseOTPSecret(s)
		if err != nil {
			return err
		}
		users[i] = &user{name: e.Spec.User, index: i, key: k, params: p}
		return nil
	})
	return users, err
}

// startTimed starts a verifier for the burst's policy and returns how long it took to be ready.
func (b *bench) startTimed(ctx context.Context, name string) (runningVerifier, time.Duration, error) {
	start := time.Now()
	v, err := b.startVerifier(ctx, b.burstNS, name)
	return v, time.Since(start), err
}

// confirmAll confirms every user's enrollment through the verifier at url, with the clients' parallelism.
func (b *bench) confirmAll(users []*user, url string) (runResult, error) {
	hc := &http.Client{Timeout: 30 * time.Second}
	var mu sync.Mutex
	var res runResult
	b.settle()
	cpu := b.cpuMeter()
	before, err := b.requests()
	if err != nil {
		return res, err
	}
	took, err := parallel(len(users), b.c.clients, func(i int) error {
		u := users[i]
		began := time.Now()
		r, err := hc.Post(url+"/v1/enrollments/"+u.name+"/confirm", "application/json",
			bytes.NewBufferString(fmt.Sprintf(`{"code":%q}`, u.code())))
		if err != nil {
			return err
		}
		answer, _ := io.ReadAll(io.LimitReader(r.Body, 200))
		_ = r.Body.Close()
		if r.StatusCode != http.StatusOK {
			return fmt.Errorf("confirming %s: %d %s", u.name, r.StatusCode, bytes.TrimSpace(answer))
		}
		u.accepted()
		mu.Lock()
		res.latencies = append(res.latencies, time.Since(began))
		mu.Unlock()
		return nil
	})
	slices.Sort(res.latencies)
	res.decisions = len(res.latencies)
	res.rate = float64(res.decisions) / took.Seconds()
	res.cpu = cpu.since(res.decisions)
	if after, rerr := b.requests(); rerr == nil {
		res.requests = diff(after, before)
	}
	fmt.Printf("    first decisions: %.0f /s, %s; CPU per decision %v\n", res.rate, res.summary(), res.cpu)
	return res, err
}
