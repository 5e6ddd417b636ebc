package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/devcluster"
	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/render"
	"github.com/kube2fa/kube2fa/internal/scheme"
	"github.com/kube2fa/kube2fa/internal/testenv"
)

type bench struct {
	c       config
	env     *testenv.Env
	cluster *devcluster.Cluster
	// client has no client-side rate limit: the benchmark measures the server.
	client  client.WithWatch
	metrics rest.Interface
	manager *devcluster.Process
	burstNS string
	// procs are the PIDs of the processes whose CPU time the verification runs account; pprof the
	// addresses of those serving /debug/pprof.
	procs map[string]int
	pprof map[string]string
}

func newBench(ctx context.Context, c config, env *testenv.Env, cl *devcluster.Cluster) (*bench, error) {
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = -1, 0
	k, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	procs := map[string]int{"bench": os.Getpid()}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		path, err := filepath.EvalSymlinks(filepath.Join(testenv.BinDir(), name))
		if err == nil {
			path, err = filepath.Abs(path)
		}
		if err == nil {
			procs[name] = pidOf(path)
		}
	}
	return &bench{c: c, env: env, cluster: cl, client: k, metrics: cs.RESTClient(), procs: procs, pprof: map[string]string{}}, nil
}

// requests reads the API server's request counters: verb+resource → count.
func (b *bench) requests() (map[string]float64, error) {
	raw, err := b.metrics.Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		return nil, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, m := range families["apiserver_request_total"].GetMetric() {
		l := map[string]string{}
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		key := l["verb"] + " " + l["resource"]
		if l["subresource"] != "" {
			key += "/" + l["subresource"]
		}
		out[key] += m.GetCounter().GetValue()
		if l["code"] == "409" {
			out["conflict "+key] += m.GetCounter().GetValue()
		}
	}
	return out, nil
}

func diff(after, before map[string]float64) map[string]float64 {
	d := map[string]float64{}
	for k, v := range after {
		if v-before[k] > 0 {
			d[k] = v - before[k]
		}
	}
	return d
}

func writes(d map[string]float64) float64 {
	var n float64
	for k, v := range d {
		switch strings.SplitN(k, " ", 2)[0] { // "conflict ..." keys count again what is counted already
		case "POST", "PUT", "PATCH", "DELETE":
			n += v
		}
	}
	return n
}

func (b *bench) namespace(ctx context.Context, prefix string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	return ns.Name, b.client.Create(ctx, ns)
}

func (b *bench) policy(ctx context.Context, ns string, methods ...v1alpha1.Method) error {
	return b.client.Create(ctx, &v1alpha1.TwoFactorPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "webapp"},
		Spec: v1alpha1.TwoFactorPolicySpec{Mode: v1alpha1.ModeEnforced, Methods: methods}})
}

func newEnrollment(ns string, i int, m v1alpha1.Method) *v1alpha1.UserEnrollment {
	return &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("user-%05d", i)},
		Spec: v1alpha1.UserEnrollmentSpec{PolicyRef: v1alpha1.PolicyReference{Name: "webapp"}, User: fmt.Sprintf("user-%05d", i), Method: m}}
}

// parallel runs f(0..n-1) on workers goroutines and returns how long it took.
func parallel(n, workers int, f func(i int) error) (time.Duration, error) {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), firstErr
}

// reconcileBurst: N enrollments created at once; time until all are Ready with their Secret, next to a
// plain client doing the same writes with the same parallelism. The manager runs alone for the burst
// (its memory is that of N enrollments) and is stopped while the plain client writes.
func (b *bench) reconcileBurst(ctx context.Context, t *table) error {
	n, r := b.c.n, b.c.reconcilers
	if err := b.startManager(ctx); err != nil {
		return err
	}
	ns, err := b.namespace(ctx, "burst")
	if err != nil {
		return err
	}
	b.burstNS = ns
	if err := b.policy(ctx, ns, v1alpha1.MethodTOTP); err != nil {
		return err
	}
	allReady, err := b.watchReady(ctx, ns, n)
	if err != nil {
		return err
	}
	b.settle()
	before, err := b.requests()
	if err != nil {
		return err
	}
	start := time.Now()
	if _, err := parallel(n, r, func(i int) error { return b.client.Create(ctx, newEnrollment(ns, i, "")) }); err != nil {
		return err
	}
	select {
	case <-allReady:
	case <-time.After(10 * time.Minute):
		return fmt.Errorf("not all %d enrollments were Ready within 10 minutes", n)
	}
	took := time.Since(start)
	after, err := b.requests()
	if err != nil {
		return err
	}
	d := diff(after, before)
	perEnrollment := (writes(d) - float64(n)) / float64(n) // minus the benchmark's own N creates
	hwm, rss := procMemory(b.manager.PID())
	heap := heapAfterGC("http://" + b.pprof["manager"])
	b.saveHeapProfile("burst", "manager")
	if err := b.stopManager(); err != nil {
		return err
	}

	ceiling, err := b.reconcileCeiling(ctx)
	if err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	// The verification runs need the manager again; the ceiling's enrollments give it nothing to write.
	if !b.c.burstOnly {
		if err := b.startManager(ctx); err != nil {
			return err
		}
	}

	ceilRate, rate := float64(n)/ceiling.Seconds(), float64(n)/took.Seconds()
	t.add(fmt.Sprintf("Reconcile burst, N=%d: enrollments Ready with their Secret", n), fmt.Sprintf("%.0f /s (%.1fs)", rate, took.Seconds()),
		"from the first create to the last Ready")
	t.add("Ceiling: plain client, same writes (create, Secret, status)", fmt.Sprintf("%.0f /s (%.1fs)", ceilRate, ceiling.Seconds()),
		fmt.Sprintf("%d workers", r))
	t.add("Reconcile ratio to the ceiling", fmt.Sprintf("%.2f", rate/ceilRate), "bar: >= 0.7 at N=10,000")
	t.add("Manager API writes per enrollment", fmt.Sprintf("%.2f", perEnrollment),
		fmt.Sprintf("minimum: Secret create + status update = 2; breakdown: %s", breakdown(d, n)))
	t.add(fmt.Sprintf("Manager peak RSS, N=%d", n), mib(hwm), "bar: <= 150 MiB at N=10,000")
	t.add("Manager RSS / Go heap after GC, after the burst", mib(rss)+" / "+mib(heap), "")
	return nil
}

// reconcileCeiling makes the writes a reconcile burst makes, with a plain client and the same parallelism.
func (b *bench) reconcileCeiling(ctx context.Context) (time.Duration, error) {
	ns, err := b.namespace(ctx, "ceiling")
	if err != nil {
		return 0, err
	}
	if err := b.policy(ctx, ns, v1alpha1.MethodTOTP); err != nil {
		return 0, err
	}
	policy := (&v1alpha1.TwoFactorPolicy{ObjectMeta: metav1.ObjectMeta{Name: "webapp"},
		Spec: v1alpha1.TwoFactorPolicySpec{Mode: v1alpha1.ModeEnforced, Methods: []v1alpha1.Method{v1alpha1.MethodTOTP}}}).Resolve()
	params := render.ParamsFor(policy, v1alpha1.MethodTOTP)
	b.settle()
	return parallel(b.c.n, b.c.reconcilers, func(i int) error {
		e := newEnrollment(ns, i, "")
		if err := b.client.Create(ctx, e); err != nil {
			return err
		}
		key := make([]byte, v1alpha1.DefaultSecretBytes)
		_, _ = rand.Read(key)
		s, err := render.OTPSecret(e, params, "webapp", key)
		if err != nil {
			return err
		}
		if err := b.client.Create(ctx, s); err != nil {
			return err
		}
		// Exactly the status the manager writes, by the same rules, so that the manager, started again, has
		// nothing to do here.
		secret := &enrollment.SecretFacts{Name: s.Name, UID: string(s.UID), Owned: true}
		enrollment.BindKey(&e.Status, secret.Name, secret.UID)
		e.Status.Method, e.Status.ObservedGeneration = v1alpha1.MethodTOTP, e.Generation
		meta.SetStatusCondition(&e.Status.Conditions, enrollment.Ready(enrollment.Facts{Generation: e.Generation,
			Policy: &policy, PolicyName: "webapp", Method: v1alpha1.MethodTOTP, Secret: secret}))
		enrollment.SetConditions(&e.Status, e.Generation, time.Now())
		return b.client.Status().Update(ctx, e)
	})
}

func (b *bench) startManager(ctx context.Context) error {
	probe, pprof := devcluster.FreeAddr(), devcluster.FreeAddr()
	m, err := b.cluster.Start("manager", b.c.manager, "--metrics-bind-address=0",
		"--health-probe-bind-address="+probe, "--pprof-bind-address="+pprof,
		fmt.Sprintf("--max-concurrent-reconciles=%d", b.c.reconcilers), "--kube-api-qps=100000", "--kube-api-burst=100000")
	if err != nil {
		return err
	}
	b.manager, b.procs["manager"], b.pprof["manager"] = m, m.PID(), pprof
	return m.WaitHTTP(ctx, "http://"+probe+"/readyz", time.Minute)
}

func (b *bench) stopManager() error {
	delete(b.procs, "manager")
	delete(b.pprof, "manager")
	return b.manager.Stop()
}

func breakdown(d map[string]float64, n int) string {
	var parts []string
	for k, v := range d {
		if per := v / float64(n); per >= 0.05 {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, per))
		}
	}
	return strings.Join(parts, ", ")
}

// watchReady reports on the returned channel once n enrollments in ns are Ready. The API server closes a
// watch that falls behind a burst; the watch then resumes where it stopped, or from a fresh list when
// that point has been compacted away.
func (b *bench) watchReady(ctx context.Context, ns string, n int) (<-chan struct{}, error) {
	ready := map[string]bool{}
	see := func(e *v1alpha1.UserEnrollment) {
		if meta.IsStatusConditionTrue(e.Status.Conditions, v1alpha1.ConditionReady) {
			ready[e.Name] = true
		}
	}
	list := func() (string, error) {
		var l v1alpha1.UserEnrollmentList
		if err := b.client.List(ctx, &l, client.InNamespace(ns)); err != nil {
			return "", err
		}
		for i := range l.Items {
			see(&l.Items[i])
		}
		return l.ResourceVersion, nil
	}
	rv, err := list()
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		for len(ready) < n && ctx.Err() == nil {
			if rv == "" {
				if rv, err = list(); err != nil {
					fmt.Println("    listing enrollments:", err)
					time.Sleep(time.Second) // back off while the API server cannot answer
					continue
				}
			}
			w, err := b.client.Watch(ctx, &v1alpha1.UserEnrollmentList{}, &client.ListOptions{Namespace: ns,
				Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
			if err != nil {
				fmt.Println("    watching enrollments:", err)
				rv = ""
				continue
			}
			for ev := range w.ResultChan() {
				if ev.Type == watch.Error {
					rv = "" // most likely 410 Gone: list again
					break
				}
				e, ok := ev.Object.(*v1alpha1.UserEnrollment)
				if !ok {
					continue
				}
				rv = e.ResourceVersion
				if ev.Type != watch.Deleted && ev.Type != watch.Bookmark {
					see(e)
				}
				if len(ready) == n {
					break
				}
			}
			w.Stop()
		}
		if len(ready) == n {
			close(done)
		}
	}()
	return done, nil
}

// procMemory returns a process's peak and current resident set size in bytes.
func procMemory(pid int) (peak, current uint64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(fields[1], 10, 64)
		switch fields[0] {
		case "VmHWM:":
			peak = kb << 10
		case "VmRSS:":
			current = kb << 10
		}
	}
	return peak, current
}

// heapAfterGC forces a GC through pprof and returns HeapInuse.
func heapAfterGC(pprof string) uint64 {
	raw, err := fetch(pprof + "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapInuse = "); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

func mib(b uint64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
