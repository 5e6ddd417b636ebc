package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/controllers"
	"github.com/kube2fa/kube2fa/internal/devcluster"
	"github.com/kube2fa/kube2fa/internal/manifests"
	"github.com/kube2fa/kube2fa/internal/scheme"
)

// APF isolation: what the API Priority and Fairness objects buy another tenant of the API server while
// verifiers take a flood of wrong codes. The verifier runs as a ServiceAccount (an injected pod's identity;
// the benchmark's own admin identity is exempt from APF), the other tenant as a ServiceAccount of another
// namespace, which the built-in service-accounts schema puts in workload-low, writing ConfigMaps with
// resourceVersion-guarded updates, closed-loop. Three runs: the tenant alone; the tenant during the flood with
// config/apf and the FlowSchema the manager keeps for injected verifiers; the same without them, where the
// flood shares the tenant's level.

const (
	// floodUsers spreads the wrong codes over enough users that none reaches the policy's maxFailures.
	floodUsers = 512
	// tenantWriters are the other tenant's concurrent writers.
	tenantWriters = 4
	// floodFailures is the policy's maxFailures during the flood: its CRD maximum.
	floodFailures = 100
)

func (b *bench) apfIsolation(ctx context.Context, t *table) error {
	flood, err := b.namespace(ctx, "flood")
	if err != nil {
		return err
	}
	if err := b.client.Create(ctx, &v1alpha1.TwoFactorPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: flood, Name: "webapp"},
		Spec: v1alpha1.TwoFactorPolicySpec{Mode: v1alpha1.ModeEnforced, Methods: []v1alpha1.Method{v1alpha1.MethodHOTP},
			Lockout: &v1alpha1.LockoutSettings{MaxFailures: floodFailures}}}); err != nil {
		return err
	}
	users, err := b.enrolledUsers(ctx, flood, floodUsers)
	if err != nil {
		return err
	}
	verifierSA := types.NamespacedName{Namespace: flood, Name: "webapp"}
	name, groups := serviceAccountUser(verifierSA)
	kubeconfig, err := b.env.UserKubeconfig(name, groups...)
	if err != nil {
		return err
	}
	if err := b.bindVerifierRole(ctx, verifierSA); err != nil {
		return err
	}
	addr := devcluster.FreeAddr()
	v, err := b.cluster.StartAs("verifier-flood", b.c.verifier, kubeconfig, "--policy=webapp", "--namespace="+flood,
		"--listen="+addr, "--kube-api-qps=-1")
	if err != nil {
		return err
	}
	defer func() { _ = v.Stop() }()
	if err := v.WaitHTTP(ctx, "http://"+addr+"/readyz", time.Minute); err != nil {
		return fmt.Errorf("the flood's verifier, as ServiceAccount %s: %w\n%s", verifierSA, err, v.Logs())
	}
	tenant, err := b.newTenant(ctx)
	if err != nil {
		return err
	}
	apf, err := b.applyAPF(ctx, verifierSA)
	if err != nil {
		return err
	}

	// What the flood takes from the tenant is the API server's: the flood's verifier runs on a worker node.
	if err := b.standForACluster(v.PID()); err != nil {
		return err
	}
	defer b.standAlone()
	fmt.Println("  the other tenant alone ...")
	alone := b.drive(offered{clients: tenantWriters}, b.c.duration, tenant.write)
	fmt.Println("  the other tenant during the flood, with kube2fa's FlowSchemas ...")
	withAPF, floodWith, err := b.duringFlood(users, "http://"+addr, tenant)
	if err != nil {
		return err
	}
	for _, o := range apf {
		if err := b.client.Delete(ctx, o); err != nil {
			return err
		}
	}
	fmt.Println("  the other tenant during the flood, without them ...")
	withoutAPF, floodWithout, err := b.duringFlood(users, "http://"+addr, tenant)
	if err != nil {
		return err
	}

	t.add("Other tenant's guarded writes alone (workload-low)", fmt.Sprintf("%.0f /s", alone.rate),
		fmt.Sprintf("%d writers, closed loop; %s", tenantWriters, alone.summary()))
	t.add("The same during a flood of wrong codes, with kube2fa's FlowSchemas (at least 0.30)", fmt.Sprintf("%.2f of alone", withAPF.rate/alone.rate),
		fmt.Sprintf("%.0f /s, %s; flood %s", withAPF.rate, withAPF.summary(), floodWith))
	t.add("The same without them (the flood in workload-low)", fmt.Sprintf("%.2f of alone", withoutAPF.rate/alone.rate),
		fmt.Sprintf("%.0f /s, %s; flood %s", withoutAPF.rate, withoutAPF.summary(), floodWithout))
	return nil
}

// floodResult is what the flood achieved while the tenant wrote.
type floodResult struct {
	answered, refused int
	duration          time.Duration
	level             string
}

func (f floodResult) String() string {
	return fmt.Sprintf("%.0f wrong codes/s counted, %d answered 503; verifier requests in %s",
		float64(f.answered)/f.duration.Seconds(), f.refused, f.level)
}

// duringFlood runs the tenant's writers while floodClients clients send wrong codes, spread over users, to
// the verifier at url; it reports the tenant's run and the flood's.
func (b *bench) duringFlood(users []*user, url string, tenant *tenant) (runResult, floodResult, error) {
	before, err := b.dispatched()
	if err != nil {
		return runResult{}, floodResult{}, err
	}
	floodClients := b.c.clients * 8
	tr := &http.Transport{MaxIdleConnsPerHost: floodClients}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	stop := make(chan struct{})
	var mu sync.Mutex
	var f floodResult
	var answers atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range floodClients {
		wg.Go(func() {
			var answered, refused int
			for i := w; ; i += floodClients {
				select {
				case <-stop:
					mu.Lock()
					f.answered, f.refused = f.answered+answered, f.refused+refused
					mu.Unlock()
					return
				default:
				}
				u := users[i%len(users)]
				body := fmt.Sprintf(`{"user":%q,"code":%q}`, u.name, strings.Repeat("0", int(u.params.Digits)))
				r, err := hc.Post(url+"/v1/verify", "application/json", bytes.NewBufferString(body))
				if err != nil {
					refused++
					continue
				}
				_, _ = io.Copy(io.Discard, r.Body)
				_ = r.Body.Close()
				answers.Add(1)
				if r.StatusCode == http.StatusUnauthorized {
					answered++
				} else {
					refused++
				}
			}
		})
	}
	// The tenant is measured once every flood client has had answers: the flood is in full swing.
	for answers.Load() < int64(2*floodClients) {
		time.Sleep(10 * time.Millisecond)
	}
	res := b.drive(offered{clients: tenantWriters}, b.c.duration, tenant.write)
	close(stop)
	wg.Wait()
	f.duration = time.Since(start)
	after, err := b.dispatched()
	if err != nil {
		return res, f, err
	}
	f.level = dispatchedTo(after, before, "kube2fa-verifiers", "workload-low")
	return res, f, nil
}

// dispatchedTo says how many requests each of levels dispatched between two readings.
func dispatchedTo(after, before map[string]float64, levels ...string) string {
	var parts []string
	for _, l := range levels {
		parts = append(parts, fmt.Sprintf("%s %.0f", l, after[l]-before[l]))
	}
	return "dispatched: " + strings.Join(parts, ", ")
}

// dispatched reads the API server's count of dispatched requests per priority level.
func (b *bench) dispatched() (map[string]float64, error) {
	return b.counters("apiserver_flowcontrol_dispatched_requests_total", "priority_level")
}

// tenant is another user of the API server: a ServiceAccount writing its ConfigMaps.
type tenant struct {
	client client.Client
	cms    []*corev1.ConfigMap
}

// write is one guarded update of writer w's ConfigMap; a conflict is a failed write.
func (tn *tenant) write(w, i int) bool {
	cm := tn.cms[w]
	cm.Data = map[string]string{"i": fmt.Sprint(i)}
	return tn.client.Update(context.Background(), cm) == nil
}

// newTenant creates the tenant's namespace, ServiceAccount, permission to update ConfigMaps there, and a
// ConfigMap per writer.
func (b *bench) newTenant(ctx context.Context) (*tenant, error) {
	ns, err := b.namespace(ctx, "tenant")
	if err != nil {
		return nil, err
	}
	sa := types.NamespacedName{Namespace: ns, Name: "writer"}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "writer"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "update"}}}}
	if err := b.client.Create(ctx, role); err != nil {
		return nil, err
	}
	if err := b.bind(ctx, sa, rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}); err != nil {
		return nil, err
	}
	name, groups := serviceAccountUser(sa)
	cfg, err := b.env.UserConfig(name, groups...)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = -1, 0
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		return nil, err
	}
	tn := &tenant{client: c}
	for w := range tenantWriters {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("w%d", w)}}
		if err := b.client.Create(ctx, cm); err != nil {
			return nil, err
		}
		tn.cms = append(tn.cms, cm)
	}
	return tn, nil
}

// serviceAccountUser is ServiceAccount sa's user name and groups, what the API server makes of a pod's token
// (here authenticated by a client certificate).
func serviceAccountUser(sa types.NamespacedName) (string, []string) {
	return "system:serviceaccount:" + sa.Namespace + ":" + sa.Name,
		[]string{"system:serviceaccounts", "system:serviceaccounts:" + sa.Namespace, "system:authenticated"}
}

// bindVerifierRole gives sa, in its namespace, the verifier Role of config/rbac/verifier.
func (b *bench) bindVerifierRole(ctx context.Context, sa types.NamespacedName) error {
	objs, err := b.rendered(ctx, "config/rbac/verifier")
	if err != nil {
		return err
	}
	role := &rbacv1.Role{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs[0].Object, role); err != nil {
		return err
	}
	role.Namespace = sa.Namespace
	if err := b.client.Create(ctx, role); err != nil {
		return err
	}
	return b.bind(ctx, sa, rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name})
}

// bind binds ref to sa in sa's namespace.
func (b *bench) bind(ctx context.Context, sa types.NamespacedName, ref rbacv1.RoleRef) error {
	return b.client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: sa.Namespace, Name: sa.Name + "-" + ref.Name},
		RoleRef:    ref,
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: sa.Namespace, Name: sa.Name}},
	})
}

// applyAPF creates config/apf's objects and the FlowSchema the manager keeps for injected verifiers, here
// for sa; it returns the FlowSchemas, whose deletion undoes it.
func (b *bench) applyAPF(ctx context.Context, sa types.NamespacedName) ([]client.Object, error) {
	objs, err := b.rendered(ctx, "config/apf")
	if err != nil {
		return nil, err
	}
	var schemas []client.Object
	for _, o := range objs {
		if err := b.client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
		if o.GetKind() == "FlowSchema" {
			schemas = append(schemas, o)
		}
	}
	injected := controllers.InjectedVerifiersFlowSchema("kube2fa-verifiers", []types.NamespacedName{sa})
	if err := b.client.Create(ctx, injected); err != nil {
		return nil, err
	}
	return append(schemas, injected), nil
}

// rendered builds dir with kustomize.
func (b *bench) rendered(ctx context.Context, dir string) ([]*unstructured.Unstructured, error) {
	out, err := manifests.Build(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("rendering %s: %w", dir, err)
	}
	return manifests.Parse(out)
}
