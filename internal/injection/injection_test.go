package injection_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/controllers"
	"github.com/kube2fa/kube2fa/internal/inject"
	"github.com/kube2fa/kube2fa/internal/manifests"
	"github.com/kube2fa/kube2fa/internal/testenv"
)

var env *testenv.Env

// The ServiceAccount admission plugin is on, as in a real cluster: it mounts the pod's token into every
// container before the webhook runs, which the webhook must undo for all but the verifier.
func TestMain(m *testing.M) {
	testenv.Main(m, testenv.Options{ServiceAccountAdmission: true}, &env)
}

const (
	system     = "kube2fa-system"
	testImage  = "ghcr.io/kube2fa/kube2fa:test"
	policyName = "webapp"
)

// installed is config/default's injection, for real: its RBAC, webhook configuration and certificate
// Secret created in the API server, with the webhook's clientConfig pointed at localhost (no cluster
// network here), and the manager run in-process as config/default's ServiceAccount with nothing but the
// rendered RBAC.
type installed struct {
	manager *rest.Config
	webhook string
}

func install(t *testing.T) installed {
	t.Helper()
	out, err := manifests.Build(t.Context(), "config/default")
	if err != nil {
		t.Skip(err)
	}
	objs, err := manifests.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	var sa, certSecret, webhookName string
	for _, o := range objs {
		switch o.GetKind() {
		case "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Secret",
			"FlowSchema", "PriorityLevelConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
		case "MutatingWebhookConfiguration":
			webhookName = o.GetName()
			manifests.PointWebhooksAt(o, fmt.Sprintf("https://localhost:%d%s", port, controllers.InjectPath))
		default:
			continue
		}
		switch o.GetKind() {
		case "ServiceAccount":
			sa = o.GetName()
		case "Secret":
			certSecret = o.GetName()
		}
		if err := env.Client.Create(t.Context(), o.DeepCopy()); err != nil {
			t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	as := rest.CopyConfig(env.Config)
	as.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + system + ":" + sa,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + system, "system:authenticated"},
	}
	certDir := t.TempDir()
	secret := types.NamespacedName{Namespace: system, Name: certSecret}
	mountCtx, unmount := context.WithCancel(context.Background())
	mounted := testenv.MountSecret(mountCtx, env.Client, secret, certDir)
	t.Cleanup(func() { unmount(); <-mounted })
	env.StartManagerAs(t, as, "", controllers.Options{Injection: &controllers.InjectionOptions{
		Port:                 port,
		CertDir:              certDir,
		Rotate:               true,
		CertSecret:           secret,
		DNSNames:             []string{"kube2fa-webhook-service." + system + ".svc", "localhost"},
		WebhookConfiguration: webhookName,
		VerifierClusterRole:  "kube2fa-verifier",
		Sidecar:              inject.Options{Image: testImage},
		PriorityLevel:        "kube2fa-verifiers",
	}})
	return installed{manager: as, webhook: webhookName}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// appNamespace is a namespace where Pod Security enforces "restricted" (proved by a privileged pod being
// refused), with the policy and the application's own ServiceAccount.
func appNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "inject-", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
	}}}
	if err := env.Client.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "webapp"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default"}},
		&v1alpha1.TwoFactorPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: policyName},
			Spec: v1alpha1.TwoFactorPolicySpec{Mode: v1alpha1.ModeEnforced, Methods: []v1alpha1.Method{v1alpha1.MethodTOTP}}},
	} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	privileged := appPod(ns.Name, "", "privileged")
	privileged.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
	if err := env.Client.Create(t.Context(), privileged, client.DryRunAll); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "PodSecurity") {
		t.Fatalf("Pod Security admission does not enforce restricted in %s: %v", ns.Name, err)
	}
	return ns.Name
}

// appPod is an application pod that meets "restricted" on its own, labelled for policy unless it is empty.
func appPod(ns, policy, name string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "webapp"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "webapp",
			SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name: "app", Image: "nginxinc/nginx-unprivileged:stable",
				Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
	if policy != "" {
		p.Labels[inject.LabelPolicy] = policy
	}
	return p
}

// samplePod is a pod of config/samples/app's Deployment, as its ReplicaSet would create it.
func samplePod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	out, err := manifests.Build(t.Context(), "config/samples/app")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifests.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		d := &appsv1.Deployment{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, d); err != nil {
			t.Fatal(err)
		}
		if d.Spec.Template.Labels[inject.LabelPolicy] != policyName || d.Spec.Template.Spec.ServiceAccountName != "webapp" {
			t.Fatalf("config/samples/app's pods are not labelled for policy %s with ServiceAccount webapp: %+v", policyName, d.Spec.Template)
		}
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: d.Spec.Template.Labels, Annotations: d.Spec.Template.Annotations},
			Spec:       d.Spec.Template.Spec,
		}
	}
	t.Fatal("config/samples/app renders no Deployment")
	return nil
}

// createThroughWebhook creates pod, waiting for the webhook to serve (a labelled pod is refused while it
// cannot be called), and returns what the API server stored, or the admission error.
func createThroughWebhook(t *testing.T, pod *corev1.Pod) (*corev1.Pod, error) {
	t.Helper()
	var err error
	testenv.Eventually(t, "the webhook to answer", func() bool {
		err = env.Client.Create(t.Context(), pod.DeepCopy())
		return err == nil || !strings.Contains(err.Error(), "failed calling webhook")
	})
	if err != nil {
		return nil, err
	}
	got := &corev1.Pod{}
	return got, env.Client.Get(t.Context(), client.ObjectKeyFromObject(pod), got)
}

func TestInjectionByLabel(t *testing.T) {
	inst := install(t)
	ns := appNamespace(t)

	labelled, err := createThroughWebhook(t, samplePod(t, ns, "webapp-1"))
	if err != nil {
		t.Fatalf("a pod of config/samples/app's Deployment is refused: %v", err)
	}

	t.Run("the manager keeps the certificate and the caBundle", func(t *testing.T) {
		wh := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := env.Client.Get(t.Context(), client.ObjectKey{Name: inst.webhook}, wh); err != nil {
			t.Fatal(err)
		}
		if len(wh.Webhooks[0].ClientConfig.CABundle) == 0 {
			t.Error("the webhook configuration has no caBundle, yet the API server called the webhook")
		}
	})

	t.Run("a labelled pod gets the verifier and its app container no token", func(t *testing.T) {
		spec := labelled.Spec
		if len(spec.InitContainers) != 1 || spec.InitContainers[0].Name != inject.ContainerName {
			t.Fatalf("init containers %v, want the verifier alone", spec.InitContainers)
		}
		v := spec.InitContainers[0]
		if v.Image != testImage || !slices.Contains(v.Args, "--policy="+policyName) || ptr.Deref(v.RestartPolicy, "") != corev1.ContainerRestartPolicyAlways {
			t.Errorf("verifier %s %v restartPolicy %v", v.Image, v.Args, v.RestartPolicy)
		}
		if ptr.Deref(spec.AutomountServiceAccountToken, true) {
			t.Error("automountServiceAccountToken is not false")
		}
		for _, vol := range spec.Volumes {
			if strings.HasPrefix(vol.Name, "kube-api-access-") {
				t.Errorf("the ServiceAccount admission's token volume %s is still in the pod", vol.Name)
			}
		}
		for _, m := range spec.Containers[0].VolumeMounts {
			if m.MountPath == inject.TokenPath || strings.HasPrefix(m.Name, "kube-api-access-") {
				t.Errorf("the app container mounts %s at %s", m.Name, m.MountPath)
			}
		}
		if len(v.VolumeMounts) != 1 || v.VolumeMounts[0].MountPath != inject.TokenPath {
			t.Errorf("the verifier mounts %v, want its token at %s", v.VolumeMounts, inject.TokenPath)
		}
	})

	t.Run("an unlabelled pod is untouched", func(t *testing.T) {
		plain, err := createThroughWebhook(t, appPod(ns, "", "plain"))
		if err != nil {
			t.Fatal(err)
		}
		if len(plain.Spec.InitContainers) != 0 || plain.Spec.AutomountServiceAccountToken != nil {
			t.Errorf("an unlabelled pod was changed: %+v", plain.Spec)
		}
		// The ServiceAccount admission plugin did mount the token, as it did into the labelled pod before the
		// webhook took it out.
		if !slices.ContainsFunc(plain.Spec.Volumes, func(v corev1.Volume) bool { return strings.HasPrefix(v.Name, "kube-api-access-") }) {
			t.Errorf("the ServiceAccount admission plugin is not on: %v", plain.Spec.Volumes)
		}
	})

	t.Run("a pod that already has the verifier is not changed twice", func(t *testing.T) {
		again := appPod(ns, policyName, "webapp-2")
		again.Spec = *labelled.Spec.DeepCopy()
		got, err := createThroughWebhook(t, again)
		if err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(got.Spec.InitContainers, labelled.Spec.InitContainers) ||
			!equality.Semantic.DeepEqual(got.Spec.Volumes, labelled.Spec.Volumes) ||
			!equality.Semantic.DeepEqual(got.Spec.Containers, labelled.Spec.Containers) {
			t.Errorf("re-admission changed the pod:\nfirst  %+v\nagain  %+v", labelled.Spec, got.Spec)
		}
	})

	t.Run("refusals say why", func(t *testing.T) {
		defaultSA := appPod(ns, policyName, "as-default")
		defaultSA.Spec.ServiceAccountName = "default"
		for pod, want := range map[*corev1.Pod]string{
			appPod(ns, "nope", "no-policy"): fmt.Sprintf(`TwoFactorPolicy "nope" does not exist in namespace %q`, ns),
			appPod(ns, "Bad_Name", "bad"):   "does not name a TwoFactorPolicy",
			defaultSA:                       "ServiceAccount of its own",
		} {
			if _, err := createThroughWebhook(t, pod); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("pod %s: %v, want a refusal saying %q", pod.Name, err, want)
			}
		}
	})

	t.Run("the verifiers' requests go to the verifiers' priority level", func(t *testing.T) {
		fs := &flowcontrolv1.FlowSchema{}
		testenv.Eventually(t, "the FlowSchema for webapp's ServiceAccount", func() bool {
			return env.Client.Get(t.Context(), client.ObjectKey{Name: controllers.VerifierFlowSchemaName}, fs) == nil
		})
		if got := fs.Spec.Rules[0].Subjects; len(got) != 1 || got[0].ServiceAccount == nil || *got[0].ServiceAccount != (flowcontrolv1.ServiceAccountSubject{Namespace: ns, Name: "webapp"}) ||
			fs.Spec.PriorityLevelConfiguration.Name != "kube2fa-verifiers" {
			t.Fatalf("FlowSchema %+v", fs.Spec)
		}
		// A decision is a Lease write, which the shipped kube2fa-verifiers cannot match (it names kube2fa's
		// resources): this FlowSchema does.
		cfg, err := env.UserConfig("system:serviceaccount:"+ns+":webapp", "system:serviceaccounts", "system:serviceaccounts:"+ns, "system:authenticated")
		if err != nil {
			t.Fatal(err)
		}
		hc, err := rest.HTTPClientFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		testenv.EventuallyErr(t, "a Lease request of webapp's ServiceAccount classified by "+fs.Name, func() (bool, error) {
			res, err := hc.Get(cfg.Host + "/apis/coordination.k8s.io/v1/namespaces/" + ns + "/leases/anyone")
			if err != nil {
				return false, err
			}
			_ = res.Body.Close()
			return res.Header.Get("X-Kubernetes-PF-FlowSchema-UID") == string(fs.UID), nil
		})
	})

	t.Run("the permissions follow the label", func(t *testing.T) {
		rb := &rbacv1.RoleBinding{}
		key := client.ObjectKey{Namespace: ns, Name: controllers.VerifierAccessName}
		testenv.Eventually(t, "the verifier's RoleBinding for webapp's ServiceAccount", func() bool {
			return env.Client.Get(t.Context(), key, rb) == nil && len(rb.Subjects) == 1
		})
		if rb.RoleRef.Kind != "ClusterRole" || rb.RoleRef.Name != "kube2fa-verifier" || rb.Subjects[0].Name != "webapp" || rb.Subjects[0].Namespace != ns {
			t.Fatalf("RoleBinding %+v", rb)
		}
		sa := "system:serviceaccount:" + ns + ":webapp"
		for _, c := range []struct {
			ns, verb, group, resource string
			want                      bool
		}{
			{ns, "get", "", "secrets", true},
			{ns, "update", "coordination.k8s.io", "leases", true},
			{ns, "create", "", "pods", false},
			{"default", "get", "", "secrets", false},
		} {
			if got := allowed(t, sa, c.ns, c.verb, c.group, c.resource); got != c.want {
				t.Errorf("%s may %s %s in %s: %v, want %v", sa, c.verb, c.resource, c.ns, got, c.want)
			}
		}
		for _, name := range []string{"webapp-1", "webapp-2", "plain"} {
			if err := env.Client.Delete(t.Context(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
				t.Fatal(err)
			}
		}
		testenv.Eventually(t, "the RoleBinding and the FlowSchema to go with the last labelled pod", func() bool {
			return apierrors.IsNotFound(env.Client.Get(t.Context(), key, &rbacv1.RoleBinding{})) &&
				apierrors.IsNotFound(env.Client.Get(t.Context(), client.ObjectKey{Name: controllers.VerifierFlowSchemaName}, &flowcontrolv1.FlowSchema{}))
		})
	})

	t.Run("the manager can bind the verifier's role and nothing else", func(t *testing.T) {
		c, err := client.New(inst.manager, client.Options{Scheme: env.Client.Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		bind := func(role string) error {
			return c.Create(t.Context(), &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "probe-"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "webapp"}},
			}, client.DryRunAll)
		}
		if err := bind("kube2fa-verifier"); err != nil {
			t.Errorf("the manager cannot bind kube2fa-verifier: %v", err)
		}
		// (admin, edit and view would prove nothing here: without kube-controller-manager's aggregation they
		// are empty.)
		runPods := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "probe-run-pods"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create"}}}}
		if err := env.Client.Create(t.Context(), runPods); err != nil {
			t.Fatal(err)
		}
		for _, role := range []string{"cluster-admin", runPods.Name} {
			if err := bind(role); !apierrors.IsForbidden(err) {
				t.Errorf("the manager binds ClusterRole %s: %v, want Forbidden", role, err)
			}
		}
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}}}
		if err := c.Create(t.Context(), role, client.DryRunAll); !apierrors.IsForbidden(err) {
			t.Errorf("the manager creates Roles: %v, want Forbidden", err)
		}

		// RBAC lets it create any FlowSchema; config/webhook's admission policy fences what it may write.
		sa := flowcontrolv1.Subject{Kind: flowcontrolv1.SubjectKindServiceAccount, ServiceAccount: &flowcontrolv1.ServiceAccountSubject{Namespace: ns, Name: "webapp"}}
		everyone := flowcontrolv1.Subject{Kind: flowcontrolv1.SubjectKindGroup, Group: &flowcontrolv1.GroupSubject{Name: "system:authenticated"}}
		flowSchema := func(name, level string, precedence int32, subject flowcontrolv1.Subject) *flowcontrolv1.FlowSchema {
			return &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: flowcontrolv1.FlowSchemaSpec{
				PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: level},
				MatchingPrecedence:         precedence,
				Rules: []flowcontrolv1.PolicyRulesWithSubjects{{Subjects: []flowcontrolv1.Subject{subject},
					ResourceRules: []flowcontrolv1.ResourcePolicyRule{{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}, Namespaces: []string{"*"}}}}},
			}}
		}
		for what, fs := range map[string]*flowcontrolv1.FlowSchema{
			"another name":             flowSchema("probe", "kube2fa-verifiers", 840, sa),
			"everyone":                 flowSchema(controllers.VerifierFlowSchemaName, "kube2fa-verifiers", 840, everyone),
			"another level":            flowSchema(controllers.VerifierFlowSchemaName, "workload-low", 840, sa),
			"before the control plane": flowSchema(controllers.VerifierFlowSchemaName, "kube2fa-verifiers", 10, sa),
		} {
			testenv.Eventually(t, "the admission policy to refuse the manager a FlowSchema with "+what, func() bool {
				err := c.Create(t.Context(), fs.DeepCopy(), client.DryRunAll)
				return err != nil && strings.Contains(err.Error(), "the kube2fa manager")
			})
		}
		if err := c.Create(t.Context(), flowSchema(controllers.VerifierFlowSchemaName, "kube2fa-verifiers", 840, sa), client.DryRunAll); err != nil {
			t.Errorf("the manager cannot write the FlowSchema it keeps: %v", err)
		}
	})
}

// allowed asks the API server whether user may verb group/resource in ns.
func allowed(t *testing.T, user, ns, verb, group, resource string) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   user,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: verb, Group: group, Resource: resource,
		},
	}}
	if err := env.Client.Create(t.Context(), sar); err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}
