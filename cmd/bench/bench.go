package main

import (
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

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/controlplane"
	"github.com/kube2fa/kube2fa/internal/devcluster"
	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/render"
	"github.com/kube2fa/kube2fa/internal/scheme"
)

// The processes the benchmark names: the keys of bench.procs and bench.pprof, the names in the CPU figures and
// in the profiles' file names. The control plane's are named after their binaries.
const (
	procAPIServer     = "kube-apiserver"
	procEtcd          = "etcd"
	procManager       = "manager"
	procVerifierA     = "verifier-a"
	procVerifierB     = "verifier-b"
	procVerifierScale = "verifier-scale"
	procVerifierStorm = "verifier-storm"
	procBench         = "bench"
)

// bench is one benchmark run against one local control plane: its clients, and the processes it meters.
type bench struct {
	c       config
	env     *controlplane.Env
	cluster *devcluster.Cluster
	// client has no client-side rate limit: the benchmark measures the server.
	client client.WithWatch
	// proto is a clientset speaking protobuf to built-in resources, as a production client does.
	proto   kubernetes.Interface
	metrics rest.Interface
	manager *devcluster.Process
	burstNS string
	// procs are the PIDs of the processes whose CPU time the verification runs account; pprof the
	// addresses of those serving /debug/pprof.
	procs map[string]int
	pprof map[string]string
	// asCluster is true while the processes are pinned as in a cluster (see standForACluster).
	asCluster bool
	// compacted is the etcd revision compact last compacted to.
	compacted string
}

// newBench connects to the control plane without a client-side rate limit and finds the API server's and
// etcd's processes, to meter them.
func newBench(ctx context.Context, c config, env *controlplane.Env, cl *devcluster.Cluster) (*bench, error) {
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
	procs := map[string]int{procBench: os.Getpid()}
	for _, name := range []string{procAPIServer, procEtcd} {
		path, err := filepath.EvalSymlinks(filepath.Join(controlplane.BinDir(), name))
		if err == nil {
			path, err = filepath.Abs(path)
		}
		if err == nil {
			procs[name] = pidOf(path)
		}
	}
	pcfg := rest.CopyConfig(cfg)
	pcfg.ContentType, pcfg.AcceptContentTypes = runtime.ContentTypeProtobuf, runtime.ContentTypeProtobuf
	proto, err := kubernetes.NewForConfig(pcfg)
	if err != nil {
		return nil, err
	}
	return &bench{c: c, env: env, cluster: cl, client: k, proto: proto, metrics: cs.RESTClient(), procs: procs,
		pprof: map[string]string{}}, nil
}

// metricFamilies reads the API server's metrics.
func (b *bench) metricFamilies() (map[string]*dto.MetricFamily, error) {
	raw, err := b.metrics.Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		return nil, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(bytes.NewReader(raw))
}

// counters reads the API server's counter name, summed by the value of label.
func (b *bench) counters(name, label string) (map[string]float64, error) {
	families, err := b.metricFamilies()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, m := range families[name].GetMetric() {
		for _, p := range m.GetLabel() {
			if p.GetName() == label {
				out[p.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out, nil
}

// requests reads the API server's request counters: verb+resource → count.
func (b *bench) requests() (map[string]float64, error) {
	families, err := b.metricFamilies()
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

// diff returns the requests counted between two readings of requests: each counter's increase, only where
// it increased.
func diff(after, before map[string]float64) map[string]float64 {
	d := map[string]float64{}
	for k, v := range after {
		if v-before[k] > 0 {
			d[k] = v - before[k]
		}
	}
	return d
}

// writes sums the write requests (POST, PUT, PATCH, DELETE) of a diff of request counters.
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

// namespace creates a namespace named prefix and a random suffix, and returns its name.
func (b *bench) namespace(ctx context.Context, prefix string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	return ns.Name, b.client.Create(ctx, ns)
}

// policy creates the enforced TwoFactorPolicy "webapp" in ns with the given methods.
func (b *bench) policy(ctx context.Context, ns string, methods ...v1alpha1.Method) error {
	return b.client.Create(ctx, &v1alpha1.TwoFactorPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "webapp"},
		Spec: v1alpha1.TwoFactorPolicySpec{Mode: v1alpha1.ModeEnforced, Methods: methods}})
}

// newEnrollment returns the i-th user's enrollment in ns under the policy "webapp", for method m ("" for the
// policy's default).
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
	res, err := b.burst(ctx)
	if err != nil {
		return err
	}
	if b.c.scaleOnly { // the burst only makes the enrollments the verifier at scale finds
		b.reportBurst(t, res, 0)
		return nil
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
	b.reportBurst(t, res, ceiling)
	return nil
}

// burstResult is what a reconcile burst measured.
type burstResult struct {
	// took is the time from the first create to the last Ready; requests are the API server's requests
	// meanwhile, as a diff of its counters.
	took     time.Duration
	requests map[string]float64
	// peakRSS and rss are the manager's peak and final resident set size, heap its Go heap after a GC.
	peakRSS, rss, heap uint64
}

// burst starts the manager, has it reconcile N enrollments created at once in a namespace of their own
// (b.burstNS), measures it, and stops it.
func (b *bench) burst(ctx context.Context) (burstResult, error) {
	if err := b.startManager(ctx); err != nil {
		return burstResult{}, err
	}
	ns, err := b.namespace(ctx, "burst")
	if err != nil {
		return burstResult{}, err
	}
	b.burstNS = ns
	if err := b.policy(ctx, ns, v1alpha1.MethodHOTP); err != nil { // HOTP: the storm at scale needs fresh codes at will
		return burstResult{}, err
	}
	res, err := b.createReady(ctx, ns)
	if err != nil {
		return burstResult{}, err
	}
	m := procMemory(b.manager.PID())
	res.peakRSS, res.rss = m.peak, m.current
	res.heap = heapAfterGC("http://" + b.pprof[procManager])
	b.saveHeapProfile("burst", procManager)
	return res, b.stopManager()
}

// createReady creates N enrollments in ns, with the configured parallelism, once the control plane is idle,
// and waits until all are Ready; it returns how long that took and the API server's requests meanwhile.
func (b *bench) createReady(ctx context.Context, ns string) (burstResult, error) {
	n := b.c.n
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the watch, should the enrollments not all get Ready
	allReady, err := b.watchReady(ctx, ns, n)
	if err != nil {
		return burstResult{}, err
	}
	b.settle()
	before, err := b.requests()
	if err != nil {
		return burstResult{}, err
	}
	start := time.Now()
	if _, err := parallel(n, b.c.reconcilers, func(i int) error { return b.client.Create(ctx, newEnrollment(ns, i, "")) }); err != nil {
		return burstResult{}, err
	}
	// Ten minutes, and 20 ms more per enrollment: the 100,000-enrollment run takes about half an hour.
	limit := 10*time.Minute + time.Duration(n)*20*time.Millisecond
	select {
	case <-allReady:
	case <-time.After(limit):
		return burstResult{}, fmt.Errorf("not all %d enrollments were Ready within %v", n, limit)
	}
	took := time.Since(start)
	after, err := b.requests()
	if err != nil {
		return burstResult{}, err
	}
	return burstResult{took: took, requests: diff(after, before)}, nil
}

// reportBurst adds the burst's rows: its rate next to the ceiling's (none when ceiling is 0), the manager's
// writes per enrollment and its memory.
func (b *bench) reportBurst(t *table, res burstResult, ceiling time.Duration) {
	n, r := b.c.n, b.c.reconcilers
	perEnrollment := (writes(res.requests) - float64(n)) / float64(n) // minus the benchmark's own N creates
	ceilRate, rate := float64(n)/ceiling.Seconds(), float64(n)/res.took.Seconds()
	t.add(fmt.Sprintf("Reconcile burst, N=%d: enrollments Ready with their Secret", n), fmt.Sprintf("%.0f /s (%.1fs)", rate, res.took.Seconds()),
		"from the first create to the last Ready")
	if ceiling > 0 {
		t.add("Ceiling: plain client, same writes (create, Secret, status)", fmt.Sprintf("%.0f /s (%.1fs)", ceilRate, ceiling.Seconds()),
			fmt.Sprintf("%d workers", r))
		t.add("Reconcile ratio to the ceiling", fmt.Sprintf("%.2f", rate/ceilRate), "bar: >= 0.7 at N=10,000")
	}
	t.add("Manager API writes per enrollment", fmt.Sprintf("%.2f", perEnrollment),
		fmt.Sprintf("minimum: Secret create + status update = 2; breakdown: %s", breakdown(res.requests, n)))
	t.add(fmt.Sprintf("Manager peak RSS, N=%d", n), mib(res.peakRSS), "bars: <= 150 MiB at N=10,000, <= 300 MiB at N=100,000")
	t.add("Manager RSS / Go heap after GC, after the burst", mib(res.rss)+" / "+mib(res.heap), "")
}

// reconcileCeiling makes the writes a reconcile burst makes, with a plain client and the same parallelism.
func (b *bench) reconcileCeiling(ctx context.Context) (time.Duration, error) {
	ns, err := b.namespace(ctx, "ceiling")
	if err != nil {
		return 0, err
	}
	if err := b.policy(ctx, ns, v1alpha1.MethodHOTP); err != nil {
		return 0, err
	}
	policy := (&v1alpha1.TwoFactorPolicy{ObjectMeta: metav1.ObjectMeta{Name: "webapp"},
		Spec: v1alpha1.TwoFactorPolicySpec{Mode: v1alpha1.ModeEnforced, Methods: []v1alpha1.Method{v1alpha1.MethodHOTP}}}).Resolve()
	params := render.ParamsFor(policy, v1alpha1.MethodHOTP)
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
		e.Status.Method, e.Status.ObservedGeneration = v1alpha1.MethodHOTP, e.Generation
		meta.SetStatusCondition(&e.Status.Conditions, enrollment.Ready(enrollment.Facts{Generation: e.Generation,
			Policy: &policy, PolicyName: "webapp", Method: v1alpha1.MethodHOTP, Secret: secret}))
		enrollment.SetEnrolled(&e.Status, e.Generation)
		enrollment.SetLocked(&e.Status, nil, e.Generation, time.Now())
		return b.client.Status().Update(ctx, e)
	})
}

// startManager starts the manager, with pprof and b.c.reconcilers concurrent reconciles, meters it, and
// waits until it is ready.
func (b *bench) startManager(ctx context.Context) error {
	probe, pprof := devcluster.FreeAddr(), devcluster.FreeAddr()
	m, err := b.cluster.Start(procManager, b.c.manager, "--metrics-bind-address=0",
		"--health-probe-bind-address="+probe, "--pprof-bind-address="+pprof,
		fmt.Sprintf("--max-concurrent-reconciles=%d", b.c.reconcilers), "--kube-api-qps=-1")
	if err != nil {
		return err
	}
	b.manager, b.procs[procManager], b.pprof[procManager] = m, m.PID(), pprof
	return m.WaitHTTP(ctx, "http://"+probe+"/readyz", time.Minute)
}

// stopManager stops the manager and no longer meters it.
func (b *bench) stopManager() error {
	delete(b.procs, procManager)
	delete(b.pprof, procManager)
	return b.manager.Stop()
}

// breakdown lists the requests of a diff of request counters that come to at least 0.05 per enrollment, as
// "verb resource per-enrollment".
func breakdown(d map[string]float64, n int) string {
	var parts []string
	for k, v := range d {
		if per := v / float64(n); per >= 0.05 {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, per))
		}
	}
	return strings.Join(parts, ", ")
}

// watchReady reports on the returned channel once n enrollments in ns are Ready. An informer keeps count:
// its reflector lists and then watches, and when the API server closes a watch that falls behind a burst,
// it resumes the watch, or lists again when that point has been compacted away. watchReady returns once
// the first list is in; the informer stops once n are Ready, or when ctx ends.
func (b *bench) watchReady(ctx context.Context, ns string, n int) (<-chan struct{}, error) {
	ctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	ready := map[string]bool{} // only the informer's one handler goroutine touches it
	see := func(obj any) {
		if e, ok := obj.(*v1alpha1.UserEnrollment); ok && meta.IsStatusConditionTrue(e.Status.Conditions, v1alpha1.ConditionReady) {
			ready[e.Name] = true
		}
		if len(ready) == n && ctx.Err() == nil {
			close(done)
			stop()
		}
	}
	_, informer := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: b.enrollmentsIn(ns),
		ObjectType:    &v1alpha1.UserEnrollment{},
		Handler:       cache.ResourceEventHandlerFuncs{AddFunc: see, UpdateFunc: func(_, obj any) { see(obj) }},
	})
	go informer.RunWithContext(ctx)
	listed, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !cache.WaitForCacheSync(listed.Done(), informer.HasSynced) {
		stop()
		return nil, fmt.Errorf("listing the enrollments in %s: %w", ns, listed.Err())
	}
	return done, nil
}

// enrollmentsIn lists and watches the UserEnrollments in ns for an informer, through the benchmark's client,
// which has no client-side rate limit.
func (b *bench) enrollmentsIn(ns string) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			l := &v1alpha1.UserEnrollmentList{}
			// Limit and Continue are set apart: the client takes them from there, not from Raw, for a list.
			err := b.client.List(ctx, l, &client.ListOptions{Namespace: ns, Limit: opts.Limit, Continue: opts.Continue, Raw: &opts})
			if err != nil {
				return nil, fmt.Errorf("listing the enrollments in %s: %w", ns, err)
			}
			return l, nil
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			w, err := b.client.Watch(ctx, &v1alpha1.UserEnrollmentList{}, &client.ListOptions{Namespace: ns, Raw: &opts})
			if err != nil {
				return nil, fmt.Errorf("watching the enrollments in %s: %w", ns, err)
			}
			return w, nil
		},
	}
}

// rss is a process's resident set, in bytes: its peak, now, and now in anonymous memory (heap, stacks) and
// in mapped files (its binary).
type rss struct{ peak, current, anon, file uint64 }

// procMemory reads a process's resident set from /proc/<pid>/status.
func procMemory(pid int) rss {
	var m rss
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(raw), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(fields[1], 10, 64)
		switch fields[0] {
		case "VmHWM:":
			m.peak = kb << 10
		case "VmRSS:":
			m.current = kb << 10
		case "RssAnon:":
			m.anon = kb << 10
		case "RssFile:":
			m.file = kb << 10
		}
	}
	return m
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

// mib formats a number of bytes in whole MiB.
func mib(b uint64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
