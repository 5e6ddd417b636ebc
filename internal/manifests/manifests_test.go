package manifests_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/controllers"
	"github.com/kube2fa/kube2fa/internal/manifests"
	"github.com/kube2fa/kube2fa/internal/memory"
	"github.com/kube2fa/kube2fa/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{}, &env)
}

const (
	defaultDir = "config/default"
	samplesDir = "config/samples"
	// appDir is the sample application with the verifier injected by label; sidecarDir the same with the
	// sidecar, its Role and RoleBinding written by hand.
	appDir     = "config/samples/app"
	sidecarDir = "config/samples/app-sidecar"
	// serviceDir is the verifier as its own Deployment and Service, in namespace webapp.
	serviceDir = "config/samples/service"
	quotaDir   = "config/samples/quota"
	apfDir     = "config/apf"
	// namespacedDir is the install that serves one namespace, kube2fa by default.
	namespacedDir       = "config/namespaced"
	namespacedNamespace = "kube2fa"

	// systemNamespace is where config/default installs the manager.
	systemNamespace = "kube2fa-system"
	// samplePolicy is the TwoFactorPolicy of config/samples, which the sample app's verifier serves.
	samplePolicy = "webapp"

	psaEnforce        = "pod-security.kubernetes.io/enforce"
	psaEnforceVersion = "pod-security.kubernetes.io/enforce-version"
)

// ---------------------------------------------------------------------------------------------------------
// Against the real API server.

func TestDefaultManifestsAreAcceptedByARealAPIServer(t *testing.T) {
	r := render(t, defaultDir)
	createNamespaceFromRendering(t, r)
	serverDryRunApply(t, r, "")
}

func TestDefaultManifestsPutEveryNamespacedObjectInARestrictedKube2faSystemNamespace(t *testing.T) {
	r := render(t, defaultDir)
	ns := r.only(t, "Namespace")
	if ns.GetName() != systemNamespace {
		t.Errorf("%s renders Namespace %q, want %q", r.dir, ns.GetName(), systemNamespace)
	}
	if got := ns.GetLabels()[psaEnforce]; got != "restricted" {
		t.Errorf("%s renders Namespace %s with label %s=%q, want \"restricted\"", r.dir, ns.GetName(), psaEnforce, got)
	}
	for _, o := range r.objs {
		namespaced, err := env.Client.IsObjectNamespaced(o)
		if err != nil {
			t.Fatalf("the API server does not know %s %s: %v", o.GetKind(), o.GetName(), err)
		}
		switch {
		case namespaced && o.GetNamespace() != systemNamespace:
			t.Errorf("%s renders %s %s in namespace %q, want %q", r.dir, o.GetKind(), o.GetName(), o.GetNamespace(), systemNamespace)
		case !namespaced && o.GetNamespace() != "":
			t.Errorf("%s renders cluster-scoped %s %s with namespace %q", r.dir, o.GetKind(), o.GetName(), o.GetNamespace())
		}
	}
}

// The namespaced install is enough, and reaches no further: the manager, acting as the rendered
// ServiceAccount with nothing but the rendered RBAC, provisions a policy and an enrollment in its namespace,
// watches that namespace alone, and can read no Secret anywhere else.
func TestTheNamespacedInstallIsEnoughAndReachesNoOtherNamespace(t *testing.T) {
	r := render(t, namespacedDir)
	namedRestrictedNamespace(t, namespacedNamespace)
	serverDryRunApply(t, r, "")
	d := r.deployment(t)
	c := container(t, d, "manager")
	if v, _ := flagValue(c.Args, "watch-namespace"); v != "$(POD_NAMESPACE)" ||
		!slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
			return e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace"
		}) {
		t.Errorf("the namespaced manager does not watch its own namespace alone: args %q, env %v", c.Args, c.Env)
	}
	for _, b := range typed[rbacv1.ClusterRoleBinding](t, r, "ClusterRoleBinding") {
		for _, cr := range typed[rbacv1.ClusterRole](t, r, "ClusterRole") {
			if cr.Name != b.RoleRef.Name {
				continue
			}
			for _, rule := range cr.Rules {
				if len(rule.Resources) > 0 && !slices.ContainsFunc(rule.APIGroups, func(g string) bool {
					return g == "authentication.k8s.io" || g == "authorization.k8s.io"
				}) {
					t.Errorf("ClusterRole %s, bound cluster-wide, grants %v on %v", cr.Name, rule.Verbs, rule.Resources)
				}
			}
		}
	}

	// The rendered RBAC, for real, and the manager acting as the ServiceAccount it binds.
	for _, o := range r.objs {
		switch o.GetKind() {
		case "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding":
			if err := env.Client.Create(t.Context(), o.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}
	as := rest.CopyConfig(env.Config)
	as.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + namespacedNamespace + ":" + d.Spec.Template.Spec.ServiceAccountName,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespacedNamespace, "system:authenticated"},
	}
	env.StartManagerAs(t, as, namespacedNamespace, controllers.Options{})
	policy := &v1alpha1.TwoFactorPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: namespacedNamespace, Name: "webapp"},
		Spec: v1alpha1.TwoFactorPolicySpec{Mode: v1alpha1.ModeEnforced, Methods: []v1alpha1.Method{v1alpha1.MethodTOTP}}}
	alice := &v1alpha1.UserEnrollment{ObjectMeta: metav1.ObjectMeta{Namespace: namespacedNamespace, Name: "alice"},
		Spec: v1alpha1.UserEnrollmentSpec{PolicyRef: v1alpha1.PolicyReference{Name: "webapp"}, User: "alice"}}
	for _, o := range []client.Object{policy, alice} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	testenv.EventuallyErr(t, "the policy and the enrollment to be Ready under the namespaced RBAC", func() (bool, error) {
		err := errors.Join(env.Client.Get(t.Context(), client.ObjectKeyFromObject(policy), policy),
			env.Client.Get(t.Context(), client.ObjectKeyFromObject(alice), alice))
		return meta.IsStatusConditionTrue(policy.Status.Conditions, v1alpha1.ConditionReady) &&
			meta.IsStatusConditionTrue(alice.Status.Conditions, v1alpha1.ConditionReady), err
	})
	other, err := client.New(as, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.List(t.Context(), &corev1.SecretList{}, client.InNamespace("default")); !apierrors.IsForbidden(err) {
		t.Errorf("the namespaced manager lists Secrets in namespace default: %v, want Forbidden", err)
	}
}

// The verifier as its own Deployment: the API server accepts it in a restricted namespace, the verifier
// authenticates its callers, a NetworkPolicy admits only the application's pods to its API, and the
// application holds no token the API server accepts, only one for audience kube2fa.
func TestTheVerifierServiceAdmitsOnlyTheApplication(t *testing.T) {
	r := render(t, serviceDir)
	namedRestrictedNamespace(t, samplePolicy)
	serverDryRunApply(t, r, "") // warnings (Pod Security among them) fail it

	deployments := map[string]*appsv1.Deployment{}
	for _, d := range typed[appsv1.Deployment](t, r, "Deployment") {
		deployments[d.Name] = d
	}
	verifier, app := deployments["kube2fa-verifier"], deployments["webapp"]
	if verifier == nil || app == nil {
		t.Fatalf("%s renders Deployments %v, want kube2fa-verifier and webapp", r.dir, slices.Collect(maps.Keys(deployments)))
	}
	if v, ok := flagValue(verifier.Spec.Template.Spec.Containers[0].Args, "authenticate-callers"); !ok || v == "false" {
		t.Errorf("the verifier serves the pod network without --authenticate-callers: %q", verifier.Spec.Template.Spec.Containers[0].Args)
	}

	policies := typed[networkingv1.NetworkPolicy](t, r, "NetworkPolicy")
	if len(policies) != 1 || !maps.Equal(policies[0].Spec.PodSelector.MatchLabels, verifier.Spec.Template.Labels) {
		t.Fatalf("no NetworkPolicy selects the verifier's pods (%v)", verifier.Spec.Template.Labels)
	}
	for _, rule := range policies[0].Spec.Ingress {
		for _, port := range rule.Ports {
			if port.Port == nil || port.Port.String() != "api" {
				continue
			}
			if len(rule.From) != 1 || rule.From[0].PodSelector == nil || rule.From[0].NamespaceSelector != nil ||
				!maps.Equal(rule.From[0].PodSelector.MatchLabels, app.Spec.Template.Labels) {
				t.Errorf("the verifier's API admits %+v, want the application's pods alone", rule.From)
			}
		}
	}

	// An application with API access of its own may hold its API token: that is why it runs the verifier
	// apart. What it sends the verifier is a token for audience kube2fa, which the API server refuses.
	pod := app.Spec.Template.Spec
	var kube2faToken bool
	for _, v := range pod.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if tok := src.ServiceAccountToken; tok != nil {
				if tok.Audience != "kube2fa" {
					t.Errorf("the application mounts a token for audience %q, want kube2fa", tok.Audience)
				}
				kube2faToken = true
			}
		}
	}
	if !kube2faToken {
		t.Error("the application mounts no token for audience kube2fa: it cannot call the verifier")
	}
}

func TestSamplesAreAcceptedByARealAPIServerInARestrictedNamespace(t *testing.T) {
	ns := restrictedNamespace(t)
	// The samples say "apply with -n <namespace>": a namespace written into them would defeat that.
	for _, r := range []rendering{render(t, samplesDir), render(t, appDir), render(t, sidecarDir), render(t, quotaDir)} {
		for _, o := range r.objs {
			if o.GetNamespace() != "" {
				t.Errorf("%s renders %s %s in namespace %q: the samples must take the namespace they are applied to",
					r.dir, o.GetKind(), o.GetName(), o.GetNamespace())
			}
		}
		serverDryRunApply(t, r, ns)
	}
}

// The quota counts kube2fa's objects by the names the API server counts them by: a resource name it does not
// know would be accepted and count nothing.
func TestTheQuotaSampleCountsEnrollmentsAndSecrets(t *testing.T) {
	q := render(t, quotaDir).only(t, "ResourceQuota")
	hard, _, err := unstructured.NestedStringMap(q.Object, "spec", "hard")
	if err != nil {
		t.Fatal(err)
	}
	crd := &unstructured.Unstructured{}
	crd.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
	if err := env.Client.Get(t.Context(), client.ObjectKey{Name: "userenrollments." + v1alpha1.GroupVersion.Group}, crd); err != nil {
		t.Fatal(err)
	}
	plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	for _, want := range []string{"count/" + plural + "." + group, "count/secrets"} {
		if hard[want] == "" {
			t.Errorf("the quota does not bound %s: %v", want, hard)
		}
	}
}

// The API server puts verifier traffic, and the manager's, in priority levels of their own: a request says
// which FlowSchema classified it in a response header. Applied for real (cluster-scoped), then asked as a verifier (any ServiceAccount, on kube2fa's resources), as the
// manager's ServiceAccount, and as a ServiceAccount reading Secrets, which stays where it was.
func TestVerifierAndManagerTrafficHaveTheirOwnPriorityLevels(t *testing.T) {
	uids := map[string]string{}
	for _, o := range render(t, apfDir).objs {
		o := o.DeepCopy()
		if err := env.Client.Create(t.Context(), o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
		}
		if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(o), o); err != nil {
			t.Fatal(err)
		}
		uids[o.GetKind()+"/"+o.GetName()] = string(o.GetUID())
	}
	manager := render(t, defaultDir).only(t, "Deployment")
	sa, _, _ := unstructured.NestedString(manager.Object, "spec", "template", "spec", "serviceAccountName")
	for _, tt := range []struct {
		user, path, want string
	}{
		{"system:serviceaccount:shop:webapp", "/apis/twofactor.kube2fa.io/v1alpha1/namespaces/shop/userenrollments", "FlowSchema/kube2fa-verifiers"},
		{"system:serviceaccount:" + systemNamespace + ":" + sa, "/apis/twofactor.kube2fa.io/v1alpha1/userenrollments", "FlowSchema/kube2fa-manager"},
		{"system:serviceaccount:shop:webapp", "/api/v1/namespaces/shop/secrets", ""},
	} {
		cfg, err := env.UserConfig(tt.user, "system:serviceaccounts", "system:authenticated")
		if err != nil {
			t.Fatal(err)
		}
		hc, err := rest.HTTPClientFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		testenv.EventuallyErr(t, tt.user+" on "+tt.path+" classified by "+tt.want, func() (bool, error) {
			res, err := hc.Get(cfg.Host + tt.path) // forbidden: classification comes before authorization
			if err != nil {
				return false, err
			}
			_ = res.Body.Close()
			got := res.Header.Get("X-Kubernetes-PF-FlowSchema-UID")
			if tt.want == "" {
				return got != "" && got != uids["FlowSchema/kube2fa-verifiers"] && got != uids["FlowSchema/kube2fa-manager"], nil
			}
			return got == uids[tt.want], nil
		})
	}
}

func TestWorkloadsMeetPodSecurityRestricted(t *testing.T) {
	for _, tc := range []struct {
		name      string
		dir       string
		namespace func(*testing.T, rendering) string
	}{
		// The manager's pod is checked in the very Namespace config/default renders, labels and all.
		{"manager", defaultDir, createNamespaceFromRendering},
		{"sample app with its verifier sidecar", sidecarDir, func(t *testing.T, _ rendering) string { return restrictedNamespace(t) }},
		// Before injection; the injected pod is checked in internal/injection, through the webhook.
		{"sample app labelled for injection", appDir, func(t *testing.T, _ rendering) string { return restrictedNamespace(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.dir)
			d := r.deployment(t)
			for _, p := range hardeningProblems(d.Spec.Template.Spec) {
				t.Errorf("Deployment %s in %s: %s", d.Name, r.dir, p)
			}

			ns := tc.namespace(t, r)
			requirePodSecurityEnforced(t, ns)
			// Pod Security admission only warns about a Deployment's pod template, but it refuses a Pod.
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{
					GenerateName: d.Name + "-",
					Namespace:    ns,
					Labels:       d.Spec.Template.Labels,
					Annotations:  d.Spec.Template.Annotations,
				},
				Spec: *d.Spec.Template.Spec.DeepCopy(),
			}
			if err := env.Client.Create(t.Context(), pod, client.DryRunAll); err != nil {
				t.Fatalf("the API server refuses a Pod made from Deployment %s's template in namespace %s (enforce=restricted): %v",
					d.Name, ns, err)
			}
		})
	}
}

// ---------------------------------------------------------------------------------------------------------
// What the rendered objects say.

func TestWorkloadsHaveResourceRequestsLimitsAndProbes(t *testing.T) {
	manager := render(t, defaultDir).deployment(t)
	app := render(t, sidecarDir).deployment(t)
	for _, d := range []*appsv1.Deployment{manager, app} {
		spec := d.Spec.Template.Spec
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			for _, p := range resourceProblems(c) {
				t.Errorf("Deployment %s, container %s: %s", d.Name, c.Name, p)
			}
		}
	}
	// kube2fa's own processes tell the Go runtime their memory limit, so that the collector works harder
	// near it rather than let a burst's garbage reach the OOM killer.
	var service *appsv1.Deployment
	for _, d := range typed[appsv1.Deployment](t, render(t, serviceDir), "Deployment") {
		if d.Name == "kube2fa-verifier" {
			service = d
		}
	}
	for _, c := range []corev1.Container{container(t, manager, "manager"), container(t, app, "verifier"), container(t, service, "verifier")} {
		if !memory.HasLimitEnv(c) {
			t.Errorf("container %s does not set GOMEMLIMIT from its memory limit: %+v", c.Name, c.Env)
		}
	}
	// The manager and the verifier are kube2fa's own processes: the kubelet must be able to tell when they
	// are stuck or not ready. (The sample app's own container stands for the user's application.)
	for _, c := range []struct {
		d    *appsv1.Deployment
		name string
	}{{manager, "manager"}, {app, "verifier"}} {
		ctr := container(t, c.d, c.name)
		for kind, p := range map[string]*corev1.Probe{"liveness": ctr.LivenessProbe, "readiness": ctr.ReadinessProbe} {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path == "" {
				t.Errorf("Deployment %s, container %s: no HTTP %s probe", c.d.Name, c.name, kind)
				continue
			}
			if _, ok := probePort(ctr, p); !ok {
				t.Errorf("Deployment %s, container %s: %s probe port %s is not a port of the container", c.d.Name, c.name, kind, p.HTTPGet.Port.String())
			}
		}
	}
}

func TestManagerRunsWithLeaderElectionAndIsProbedOnItsHealthPort(t *testing.T) {
	d := render(t, defaultDir).deployment(t)
	c := container(t, d, "manager")
	if v, ok := flagValue(c.Args, "leader-elect"); !ok {
		t.Errorf("the manager runs without --leader-elect (args %q): two replicas would both reconcile", c.Args)
	} else if b, err := strconv.ParseBool(orDefault(v, "true")); err != nil || !b {
		t.Errorf("the manager runs with --leader-elect=%s, want true", v)
	}
	addr, ok := flagValue(c.Args, "health-probe-bind-address")
	if !ok {
		t.Fatalf("the manager has no --health-probe-bind-address (args %q): its probes would hit its default", c.Args)
	}
	health := addressPort(t, addr)
	for kind, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if port, ok := probePort(c, p); !ok || port != health {
			t.Errorf("the manager's %s probe targets port %d, want %d (--health-probe-bind-address=%s)", kind, port, health, addr)
		}
	}
}

func TestVerifierSidecarListensOnLoopbackAndIsProbedOnItsMetricsPort(t *testing.T) {
	d := render(t, sidecarDir).deployment(t)
	c := container(t, d, "verifier")
	if !slices.ContainsFunc(d.Spec.Template.Spec.InitContainers, func(ic corev1.Container) bool { return ic.Name == "verifier" }) ||
		c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("the verifier is not a native sidecar (an init container with restartPolicy Always)")
	}
	// The image's entrypoint is /manager: a sidecar without its own command would run the manager.
	if !slices.Equal(c.Command, []string{"/verifier"}) {
		t.Errorf("the verifier sidecar runs %q, want [/verifier]", c.Command)
	}

	policy, _ := flagValue(c.Args, "policy")
	if policy != samplePolicy {
		t.Errorf("the verifier sidecar serves --policy=%q, want %q", policy, samplePolicy)
	}
	if p := render(t, samplesDir).only(t, "TwoFactorPolicy"); p.GetName() != policy {
		t.Errorf("the verifier sidecar serves policy %q but config/samples defines TwoFactorPolicy %q", policy, p.GetName())
	}

	listen, ok := flagValue(c.Args, "listen")
	if !ok {
		t.Fatalf("the verifier sidecar has no --listen (args %q)", c.Args)
	}
	host, _, err := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		t.Errorf("the verifier sidecar listens on --listen=%s, want a loopback address such as 127.0.0.1:8089: "+
			"its API answers \"is this code right?\" to anyone who can reach it", listen)
	}
	listenPort := addressPort(t, listen)

	metricsAddr, ok := flagValue(c.Args, "metrics-listen")
	if !ok || metricsAddr == "" {
		t.Fatalf("the verifier sidecar has no --metrics-listen (args %q): the kubelet cannot reach a loopback-only API for probes", c.Args)
	}
	metrics := addressPort(t, metricsAddr)
	if metrics == listenPort {
		t.Errorf("the verifier's --metrics-listen port %d is its --listen port", metrics)
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == metrics }) {
		t.Errorf("the verifier sidecar does not declare its --metrics-listen port %d among its ports %v", metrics, c.Ports)
	}
	for kind, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if port, ok := probePort(c, p); !ok || port != metrics {
			t.Errorf("the verifier's %s probe targets port %d, want its --metrics-listen port %d", kind, port, metrics)
		}
	}
}

func TestManagerClusterRoleNeverRewritesOrDeletesSecretsNorUsesWildcards(t *testing.T) {
	r := render(t, defaultDir)
	d := r.deployment(t)
	sa := d.Spec.Template.Spec.ServiceAccountName
	if sa == "" || sa == "default" {
		t.Fatalf("the manager runs as ServiceAccount %q, want its own", sa)
	}
	if !slices.ContainsFunc(r.objs, func(o *unstructured.Unstructured) bool {
		return o.GetKind() == "ServiceAccount" && o.GetName() == sa && o.GetNamespace() == d.Namespace
	}) {
		t.Errorf("%s renders no ServiceAccount %s/%s for the manager", r.dir, d.Namespace, sa)
	}

	// The ClusterRole the manager actually gets, followed through its ClusterRoleBinding.
	var bound []string
	for _, b := range typed[rbacv1.ClusterRoleBinding](t, r, "ClusterRoleBinding") {
		if bindsServiceAccount(b.Subjects, sa, d.Namespace, "") {
			bound = append(bound, b.RoleRef.Name)
		}
	}
	if len(bound) != 1 {
		t.Fatalf("ClusterRoleBindings of %s give the manager's ServiceAccount %d ClusterRoles %q, want exactly 1", r.dir, len(bound), bound)
	}
	roles := typed[rbacv1.ClusterRole](t, r, "ClusterRole")
	i := slices.IndexFunc(roles, func(cr *rbacv1.ClusterRole) bool { return cr.Name == bound[0] })
	if i < 0 {
		t.Fatalf("the manager is bound to ClusterRole %s, which %s does not render", bound[0], r.dir)
	}
	for _, rule := range roles[i].Rules {
		if coversSecrets(rule) {
			if bad := intersect(rule.Verbs, "update", "patch", "delete", "deletecollection"); len(bad) > 0 {
				t.Errorf("ClusterRole %s lets the manager %v Secrets cluster-wide: an OTP Secret is written once, at creation", roles[i].Name, bad)
			}
		}
	}

	// Leader election needs its Lease, in the manager's own namespace only.
	var leases bool
	for _, b := range typed[rbacv1.RoleBinding](t, r, "RoleBinding") {
		if b.Namespace != d.Namespace || !bindsServiceAccount(b.Subjects, sa, d.Namespace, b.Namespace) || b.RoleRef.Kind != "Role" {
			continue
		}
		for _, role := range typed[rbacv1.Role](t, r, "Role") {
			if role.Name == b.RoleRef.Name && role.Namespace == b.Namespace {
				for _, rule := range role.Rules {
					if slices.Contains(rule.APIGroups, "coordination.k8s.io") && slices.Contains(rule.Resources, "leases") &&
						len(intersect(rule.Verbs, "get", "create", "update")) == 3 {
						leases = true
					}
				}
			}
		}
	}
	if !leases {
		t.Errorf("no Role bound to the manager's ServiceAccount in %s lets it get, create and update its leader-election Lease", d.Namespace)
	}

	for _, p := range wildcardProblems(t, r) {
		t.Error(p)
	}
}

// The verifier's token reads every user's key: only the verifier container may hold it. The pod and its
// ServiceAccount mount no token automatically, and the verifier alone mounts a projected one, with the CA
// and namespace, where client-go looks for it.
func TestOnlyTheVerifierContainerHoldsAServiceAccountToken(t *testing.T) {
	r := render(t, sidecarDir)
	d := r.deployment(t)
	pod := d.Spec.Template.Spec
	sa := typed[corev1.ServiceAccount](t, r, "ServiceAccount")
	i := slices.IndexFunc(sa, func(a *corev1.ServiceAccount) bool { return a.Name == pod.ServiceAccountName })
	if i < 0 {
		t.Fatalf("%s renders no ServiceAccount %s", r.dir, pod.ServiceAccountName)
	}
	// The kubelet mounts a token into every container unless the pod says no, or the ServiceAccount does
	// and the pod does not say yes.
	automount := ptr.Deref(pod.AutomountServiceAccountToken, ptr.Deref(sa[i].AutomountServiceAccountToken, true))
	if automount {
		t.Errorf("the pod mounts the ServiceAccount token into every container, the application's included")
	}
	withToken := map[string]bool{} // volumes that carry a token
	for _, v := range pod.Volumes {
		if v.Projected == nil {
			continue
		}
		var token, ca, namespace bool
		for _, src := range v.Projected.Sources {
			token = token || src.ServiceAccountToken != nil
			ca = ca || (src.ConfigMap != nil && src.ConfigMap.Name == "kube-root-ca.crt")
			namespace = namespace || src.DownwardAPI != nil
		}
		if token {
			withToken[v.Name] = true
			if !ca || !namespace {
				t.Errorf("volume %s carries a token without the cluster CA and the namespace client-go reads next to it", v.Name)
			}
		}
	}
	var verifierHasToken bool
	for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
		for _, m := range c.VolumeMounts {
			if !withToken[m.Name] {
				continue
			}
			if c.Name != "verifier" {
				t.Errorf("container %s mounts the token volume %s: only the verifier may hold the token", c.Name, m.Name)
				continue
			}
			verifierHasToken = m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount" && m.ReadOnly
		}
	}
	if !automount && !verifierHasToken {
		t.Error("the verifier container has no read-only token at /var/run/secrets/kubernetes.io/serviceaccount, where client-go looks")
	}
}

// The sample binds the verifier Role restricted to its policy and that policy's ConfigMap by name: it can
// read no other ConfigMap of the application's namespace.
func TestTheSampleVerifierReadsItsPolicyAndConfigMapByName(t *testing.T) {
	r := render(t, sidecarDir)
	want := map[string][]string{"configmaps": {samplePolicy + "-verifier"}, "twofactorpolicies": {samplePolicy}}
	for _, role := range typed[rbacv1.Role](t, r, "Role") {
		for _, rule := range role.Rules {
			for _, res := range rule.Resources {
				if names, named := want[res]; named && !slices.Equal(rule.ResourceNames, names) {
					t.Errorf("Role %s grants %v on %s to names %q, want only %q", role.Name, rule.Verbs, res, rule.ResourceNames, names)
				}
			}
		}
	}
}

func TestVerifierRoleIsNamespacedAndNeverWritesSecrets(t *testing.T) {
	r := render(t, sidecarDir)
	for _, o := range r.objs {
		if o.GetKind() == "ClusterRole" || o.GetKind() == "ClusterRoleBinding" {
			t.Errorf("%s renders %s %s: the verifier must get nothing cluster-wide", r.dir, o.GetKind(), o.GetName())
		}
	}
	d := r.deployment(t)
	sa := d.Spec.Template.Spec.ServiceAccountName
	if sa == "" || sa == "default" {
		t.Fatalf("the sample app runs as ServiceAccount %q, want its own", sa)
	}
	if !slices.ContainsFunc(r.objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == "ServiceAccount" && o.GetName() == sa }) {
		t.Errorf("%s renders no ServiceAccount %s for the sample app", r.dir, sa)
	}

	roles := typed[rbacv1.Role](t, r, "Role")
	var bound int
	for _, b := range typed[rbacv1.RoleBinding](t, r, "RoleBinding") {
		if !bindsServiceAccount(b.Subjects, sa, "", "") {
			continue
		}
		bound++
		if b.RoleRef.Kind != "Role" {
			t.Errorf("RoleBinding %s gives the verifier %s %s, want a namespaced Role", b.Name, b.RoleRef.Kind, b.RoleRef.Name)
			continue
		}
		i := slices.IndexFunc(roles, func(role *rbacv1.Role) bool { return role.Name == b.RoleRef.Name })
		if i < 0 {
			t.Errorf("RoleBinding %s names Role %s, which %s does not render", b.Name, b.RoleRef.Name, r.dir)
			continue
		}
		for _, rule := range roles[i].Rules {
			if !coversSecrets(rule) {
				continue
			}
			for _, v := range rule.Verbs {
				if !slices.Contains([]string{"get", "list", "watch"}, v) {
					t.Errorf("Role %s lets the verifier %s Secrets; it must only read them", roles[i].Name, v)
				}
			}
		}
	}
	if bound == 0 {
		t.Errorf("no RoleBinding in %s gives ServiceAccount %s (the verifier sidecar's) a Role", r.dir, sa)
	}
	for _, p := range wildcardProblems(t, r) {
		t.Error(p)
	}
}

// ---------------------------------------------------------------------------------------------------------
// Rendering.

// rendering is the output of one kustomization.
type rendering struct {
	dir  string
	yaml []byte
	objs []*unstructured.Unstructured
}

var (
	renderMu    sync.Mutex
	renderCache = map[string][]byte{}
)

// render builds dir (relative to the repository) with the real kustomize, once per test binary.
func render(t *testing.T, dir string) rendering {
	t.Helper()
	renderMu.Lock()
	defer renderMu.Unlock()
	out, ok := renderCache[dir]
	if !ok {
		var err error
		if out, err = manifests.Build(t.Context(), dir); errors.Is(err, manifests.ErrNoKustomize) {
			t.Skipf("cannot render %s: %v", dir, err)
		} else if err != nil {
			t.Fatal(err)
		}
		renderCache[dir] = out
	}
	return rendering{dir: dir, yaml: out, objs: parse(t, dir, out)}
}

// pinnedTool is where the Makefile installs tool at the version it pins.
func pinnedTool(t *testing.T, tool string) string {
	t.Helper()
	path, err := manifests.PinnedTool(tool)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// parse splits a multi-document YAML stream into objects.
func parse(t *testing.T, dir string, data []byte) []*unstructured.Unstructured {
	t.Helper()
	objs, err := manifests.Parse(data)
	if err != nil {
		t.Fatalf("the rendering of %s: %v", dir, err)
	}
	return objs
}

// only returns the rendering's single object of kind.
func (r rendering) only(t *testing.T, kind string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range r.objs {
		if o.GetKind() == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s renders %d objects of kind %s, want 1", r.dir, len(found), kind)
	}
	return found[0]
}

func (r rendering) deployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	convert(t, r.only(t, "Deployment"), d)
	return d
}

// typed returns the rendering's objects of kind as *T.
func typed[T any](t *testing.T, r rendering, kind string) []*T {
	t.Helper()
	var out []*T
	for _, o := range r.objs {
		if o.GetKind() == kind {
			v := new(T)
			convert(t, o, v)
			out = append(out, v)
		}
	}
	return out
}

func convert(t *testing.T, o *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, into, true); err != nil {
		t.Fatalf("%s %s does not convert to %T: %v", o.GetKind(), o.GetName(), into, err)
	}
}

func container(t *testing.T, d *appsv1.Deployment, name string) corev1.Container {
	t.Helper()
	spec := d.Spec.Template.Spec
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("Deployment %s has no container %s", d.Name, name)
	return corev1.Container{}
}

// ---------------------------------------------------------------------------------------------------------
// The API server.

// serverDryRunApply applies the rendering with the real kubectl, server-side with a server dry run: every
// object goes through the API server's decoding (strict field validation), defaulting, validation, CEL
// rules and admission, without being stored.
func serverDryRunApply(t *testing.T, r rendering, namespace string) {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not on $PATH: cannot apply the rendering to the test API server")
	}
	args := []string{"--kubeconfig=" + env.Kubeconfig, "--cache-dir=" + t.TempDir(),
		"apply", "--server-side", "--dry-run=server", "--validate=strict", "-f", "-"}
	if namespace != "" {
		args = append(args, "--namespace="+namespace)
	}
	cmd := exec.CommandContext(t.Context(), kubectl, args...)
	cmd.Stdin = bytes.NewReader(r.yaml)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("the API server refuses %s (kubectl apply --server-side --dry-run=server: %v):\n%s%s", r.dir, err, stdout.String(), stderr.String())
	}
	// Warnings are how the API server flags deprecated APIs and pod templates that Pod Security would refuse.
	if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Errorf("the API server accepts %s but warns:\n%s", r.dir, s)
	}
	for _, o := range r.objs {
		gvk := o.GroupVersionKind()
		ref := strings.ToLower(gvk.Kind)
		if gvk.Group != "" {
			ref += "." + gvk.Group
		}
		if want := ref + "/" + o.GetName() + " serverside-applied (server dry run)"; !strings.Contains(stdout.String(), want) {
			t.Errorf("kubectl did not report %q for %s:\n%s", want, r.dir, stdout.String())
		}
	}
}

// createNamespaceFromRendering creates, for real, the Namespace the rendering holds, with its labels, so
// that its namespaced objects can be dry-run applied into it. It returns its name.
func createNamespaceFromRendering(t *testing.T, r rendering) string {
	t.Helper()
	ns := r.only(t, "Namespace").DeepCopy()
	if err := env.Client.Create(t.Context(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating Namespace %s from %s: %v", ns.GetName(), r.dir, err)
	}
	return ns.GetName()
}

// restrictedNamespace creates a fresh namespace where Pod Security admission enforces "restricted".
func restrictedNamespace(t *testing.T) string {
	t.Helper()
	return namedRestrictedNamespace(t, "")
}

// namedRestrictedNamespace makes sure namespace name exists with Pod Security "restricted" enforced: a
// fresh one named manifests-... when name is empty, else the one a rendering names (kept if it exists).
func namedRestrictedNamespace(t *testing.T, name string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   name,
		Labels: map[string]string{psaEnforce: "restricted", psaEnforceVersion: "latest"},
	}}
	if name == "" {
		ns.GenerateName = "manifests-"
	}
	if err := env.Client.Create(t.Context(), ns); err != nil && (name == "" || !apierrors.IsAlreadyExists(err)) {
		t.Fatalf("creating a restricted namespace: %v", err)
	}
	return ns.Name
}

// requirePodSecurityEnforced proves that Pod Security admission refuses a privileged Pod in namespace, so
// that a Pod it accepts there meets the namespace's level.
func requirePodSecurityEnforced(t *testing.T, namespace string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "privileged-", Namespace: namespace},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:            "c",
			Image:           "busybox",
			SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
		}}},
	}
	err := env.Client.Create(t.Context(), pod, client.DryRunAll)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "PodSecurity") {
		t.Fatalf("Pod Security admission does not enforce in namespace %s: a privileged Pod got %v, want Forbidden by PodSecurity", namespace, err)
	}
}

// ---------------------------------------------------------------------------------------------------------
// Checks.

// hardeningProblems lists what kube2fa asks of its containers beyond the Pod Security "restricted" profile,
// which the API server's own admission checks (TestWorkloadsMeetPodSecurityRestricted has it refuse or
// accept a Pod made from each template): a read-only root filesystem.
func hardeningProblems(spec corev1.PodSpec) []string {
	var problems []string
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		if sc := c.SecurityContext; sc == nil || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) {
			problems = append(problems, fmt.Sprintf("container %s: readOnlyRootFilesystem is not true", c.Name))
		}
	}
	return problems
}

// resourceProblems lists the CPU and memory requests and limits c lacks, and requests above limits.
func resourceProblems(c corev1.Container) []string {
	var problems []string
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[name]
		lim, hasLim := c.Resources.Limits[name]
		if !hasReq || req.IsZero() {
			problems = append(problems, fmt.Sprintf("no %s request", name))
		}
		if !hasLim || lim.IsZero() {
			problems = append(problems, fmt.Sprintf("no %s limit", name))
		}
		if hasReq && hasLim && req.Cmp(lim) > 0 {
			problems = append(problems, fmt.Sprintf("%s request %s is above its limit %s", name, req.String(), lim.String()))
		}
	}
	return problems
}

// probePort resolves the port an HTTP probe targets, by number or by the container's port name.
func probePort(c corev1.Container, p *corev1.Probe) (int32, bool) {
	if p == nil || p.HTTPGet == nil {
		return 0, false
	}
	if p.HTTPGet.Port.Type == intstr.Int {
		return p.HTTPGet.Port.IntVal, true
	}
	for _, cp := range c.Ports {
		if cp.Name == p.HTTPGet.Port.StrVal {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// flagValue finds --name=value, --name value or a bare boolean --name (value "") in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		k, v, eq := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if k != name {
			continue
		}
		if eq {
			return v, true
		}
		if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			return args[i+1], true
		}
		return "", true
	}
	return "", false
}

// orDefault returns v, or orElse when v is empty.
func orDefault(v, orElse string) string {
	if v == "" {
		return orElse
	}
	return v
}

// addressPort returns the port of a host:port listen address.
func addressPort(t *testing.T, addr string) int32 {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	n, err := strconv.ParseInt(port, 10, 32)
	if err != nil || n <= 0 {
		t.Fatalf("listen address %q has no numeric port", addr)
	}
	return int32(n)
}

// bindsServiceAccount reports whether subjects include ServiceAccount name in namespace ns. A subject without
// a namespace, in a RoleBinding, means the binding's own namespace (bindingNS).
func bindsServiceAccount(subjects []rbacv1.Subject, name, ns, bindingNS string) bool {
	return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
		return s.Kind == rbacv1.ServiceAccountKind && s.Name == name && orDefault(s.Namespace, bindingNS) == ns
	})
}

// coversSecrets reports whether rule applies to core Secrets.
func coversSecrets(rule rbacv1.PolicyRule) bool {
	return len(intersect(rule.APIGroups, "", "*")) > 0 && len(intersect(rule.Resources, "secrets", "*")) > 0
}

// wildcardProblems lists the rules of the rendering's Roles and ClusterRoles that use '*'.
func wildcardProblems(t *testing.T, r rendering) []string {
	t.Helper()
	var problems []string
	check := func(kind, name string, rules []rbacv1.PolicyRule) {
		for i, rule := range rules {
			for field, values := range map[string][]string{
				"apiGroups": rule.APIGroups, "resources": rule.Resources, "verbs": rule.Verbs, "nonResourceURLs": rule.NonResourceURLs,
			} {
				if slices.ContainsFunc(values, func(v string) bool { return strings.Contains(v, "*") }) {
					problems = append(problems, fmt.Sprintf("%s: %s %s, rule %d, uses '*' in %s %q", r.dir, kind, name, i, field, values))
				}
			}
		}
	}
	for _, role := range typed[rbacv1.Role](t, r, "Role") {
		check("Role", role.Name, role.Rules)
	}
	for _, role := range typed[rbacv1.ClusterRole](t, r, "ClusterRole") {
		check("ClusterRole", role.Name, role.Rules)
		if role.AggregationRule != nil {
			problems = append(problems, fmt.Sprintf("%s: ClusterRole %s aggregates other ClusterRoles", r.dir, role.Name))
		}
	}
	return problems
}

// intersect returns the values among want that values holds.
func intersect(values []string, want ...string) []string {
	var out []string
	for _, w := range want {
		if slices.Contains(values, w) {
			out = append(out, w)
		}
	}
	return out
}
