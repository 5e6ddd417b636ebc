package controllers

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/inject"
)

// InjectPath is where the manager serves the pod-mutating webhook.
const InjectPath = "/inject-v1-pod"

// VerifierFlowSchemaName is the FlowSchema that puts the injected verifiers' ServiceAccounts, whatever they
// ask, into the verifiers' priority level.
const VerifierFlowSchemaName = "kube2fa-injected-verifiers"

// verifierFlowSchemaPrecedence puts it before the shipped kube2fa-verifiers (850), after the API server's
// own schemas for the control plane (up to 800), and before the built-in ones for kube-system (900) and all
// ServiceAccounts (9000).
const verifierFlowSchemaPrecedence = 840

// VerifierAccessName is the RoleBinding in each namespace with injected pods that gives their
// ServiceAccounts the verifier's ClusterRole.
const VerifierAccessName = "kube2fa-injected-verifiers"

// InjectionOptions configure sidecar injection: the webhook, its certificate and the RBAC that follows the
// label.
type InjectionOptions struct {
	// Port the webhook serves HTTPS on.
	Port int
	// CertDir holds tls.crt and tls.key: the certificate Secret mounted as a volume.
	CertDir string
	// Rotate makes the manager provision and rotate its serving certificate in CertSecret and the caBundle of
	// WebhookConfiguration itself (cert-controller's rotator). Off when cert-manager does both.
	Rotate bool
	// CertSecret is the Secret the rotator keeps the CA and serving certificate in (the one mounted at
	// CertDir).
	CertSecret types.NamespacedName
	// DNSNames the serving certificate is valid for: the webhook Service's name first.
	DNSNames []string
	// WebhookConfiguration is the MutatingWebhookConfiguration whose caBundle the rotator keeps.
	WebhookConfiguration string
	// VerifierClusterRole is what an injected pod's ServiceAccount is bound to in the pod's namespace.
	VerifierClusterRole string
	// Sidecar is what every injected verifier gets (its default image).
	Sidecar inject.Options
	// PriorityLevel, when set, is the PriorityLevelConfiguration of the verifiers (config/apf's
	// kube2fa-verifiers): the manager keeps the FlowSchema VerifierFlowSchemaName that sends every request
	// of the injected pods' ServiceAccounts there.
	PriorityLevel string
}

// The webhook: only labelled pods reach it (objectSelector), and it decides from the pod and its policy
// alone. The RBAC that follows the label: the manager reads which labelled pods run as which ServiceAccount,
// and binds the verifier ClusterRole (and nothing else: bind is granted on that name only) to those.
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings,verbs=get;list;watch;create;update;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=bind,resourceNames=kube2fa-verifier
// The same ServiceAccounts' API traffic goes to the verifiers' priority level. Creating a FlowSchema cannot be
// restricted by name in RBAC: config/apf's ValidatingAdmissionPolicy (manager_fence.yaml) lets the manager write this one
// FlowSchema only, only into kube2fa-verifiers and only for ServiceAccounts outside kube-system.
// +kubebuilder:rbac:groups=flowcontrol.apiserver.k8s.io,resources=flowschemas,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=flowcontrol.apiserver.k8s.io,resources=flowschemas,verbs=update;delete,resourceNames=kube2fa-injected-verifiers
// The certificate: the rotator keeps the webhook configuration's caBundle, and its Secret, which a Role in
// the manager's namespace alone lets it update (config/webhook/cert_role.yaml).
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=update;patch,resourceNames=kube2fa-injector

// SetupInjection serves the injection webhook and keeps the injected verifiers' RoleBindings. The webhook
// starts serving once its certificate is in CertDir (and, when the manager rotates it, in the webhook
// configuration's caBundle); until then the readiness check named "webhook" fails.
func SetupInjection(mgr ctrl.Manager, opts InjectionOptions) error {
	if opts.VerifierClusterRole == "" {
		return errors.New("injection needs the verifier's ClusterRole")
	}
	certsReady := make(chan struct{})
	if opts.Rotate {
		if len(opts.DNSNames) == 0 || opts.CertSecret.Name == "" || opts.WebhookConfiguration == "" {
			return errors.New("certificate rotation needs DNS names, a Secret and a webhook configuration")
		}
		if err := rotator.AddRotator(mgr, &rotator.CertRotator{
			SecretKey:      opts.CertSecret,
			CertDir:        opts.CertDir,
			CAName:         "kube2fa-ca",
			CAOrganization: "kube2fa",
			DNSName:        opts.DNSNames[0],
			ExtraDNSNames:  opts.DNSNames[1:],
			IsReady:        certsReady,
			Webhooks:       []rotator.WebhookInfo{{Name: opts.WebhookConfiguration, Type: rotator.Mutating}},
			FieldOwner:     "kube2fa-manager",
			// Every replica serves the webhook, so every replica keeps the certificate current.
			RequireLeaderElection: false,
			ControllerName:        "webhook-cert-rotator",
		}); err != nil {
			return fmt.Errorf("setting up certificate rotation: %w", err)
		}
	} else {
		close(certsReady)
	}

	server := webhook.NewServer(webhook.Options{
		Port:    opts.Port,
		CertDir: opts.CertDir,
		// HTTP/2 off: the rapid-reset and stream-cancellation CVEs; the API server speaks HTTP/1.1 to webhooks.
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	})
	server.Register(InjectPath, &webhook.Admission{Handler: &PodInjector{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Decoder: admission.NewDecoder(mgr.GetScheme()), Options: opts.Sidecar,
	}})
	var serving atomic.Bool
	go func() {
		<-certsReady
		if err := mgr.Add(server); err != nil {
			mgr.GetLogger().Error(err, "Starting the injection webhook")
			return
		}
		serving.Store(true)
	}()
	if err := mgr.AddReadyzCheck("webhook", func(req *http.Request) error {
		if !serving.Load() {
			return errors.New("the webhook's certificate is not ready")
		}
		return server.StartedChecker()(req)
	}); err != nil {
		return err
	}
	if err := (&VerifierAccessReconciler{Client: mgr.GetClient(), ClusterRole: opts.VerifierClusterRole}).SetupWithManager(mgr); err != nil {
		return err
	}
	if opts.PriorityLevel == "" {
		return nil
	}
	return (&VerifierFlowSchemaReconciler{Client: mgr.GetClient(), PriorityLevel: opts.PriorityLevel}).SetupWithManager(mgr)
}

// PodInjector is the mutating webhook that adds the verifier to a labelled pod (see inject.Pod).
type PodInjector struct {
	Client    client.Reader
	APIReader client.Reader
	Decoder   admission.Decoder
	Options   inject.Options
}

// Handle answers one pod's admission: unchanged when not labelled, refused with the reason when the label
// cannot be honoured, else patched with the verifier.
func (h *PodInjector) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create {
		return admission.Allowed("kube2fa injects at creation only")
	}
	pod := &corev1.Pod{}
	if err := h.Decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	policy, ok, err := inject.Policy(pod)
	if !ok {
		return admission.Allowed("no " + inject.LabelPolicy + " label")
	}
	if err != nil {
		return admission.Denied(err.Error())
	}
	if err := h.policyExists(ctx, req.Namespace, policy); err != nil {
		if apierrors.IsNotFound(err) {
			return admission.Denied(fmt.Sprintf("TwoFactorPolicy %q does not exist in namespace %q: create it first, or correct the pod's label %s", policy, req.Namespace, inject.LabelPolicy))
		}
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading TwoFactorPolicy %s/%s: %w", req.Namespace, policy, err))
	}
	if err := inject.Pod(pod, policy, h.Options); err != nil {
		return admission.Denied(err.Error())
	}
	patched, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, patched)
}

// policyExists reads the policy from the cache, and from the API server before saying it does not exist
// (a policy applied together with its Deployment may not have reached the cache yet).
func (h *PodInjector) policyExists(ctx context.Context, namespace, name string) error {
	key := client.ObjectKey{Namespace: namespace, Name: name}
	err := h.Client.Get(ctx, key, &v1alpha1.TwoFactorPolicy{})
	if apierrors.IsNotFound(err) {
		err = h.APIReader.Get(ctx, key, &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{
			APIVersion: v1alpha1.GroupVersion.String(), Kind: "TwoFactorPolicy",
		}})
	}
	return err
}

// VerifierAccessReconciler keeps, in each namespace, one RoleBinding of the verifier ClusterRole to the
// ServiceAccounts of the pods labelled for injection there, and none when there are no such pods: the
// permissions follow the label.
type VerifierAccessReconciler struct {
	client.Client
	// ClusterRole is the verifier's.
	ClusterRole string
}

// Reconcile brings one namespace's RoleBinding (req.Name is always VerifierAccessName) in line with its
// labelled pods.
func (r *VerifierAccessReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var pods corev1.PodList
	if err := r.List(ctx, &pods, client.InNamespace(req.Namespace), client.HasLabels{inject.LabelPolicy}); err != nil {
		return ctrl.Result{}, err
	}
	subjects := verifierSubjects(req.Namespace, pods.Items)
	current := &rbacv1.RoleBinding{}
	err := r.Get(ctx, req.NamespacedName, current)
	switch {
	case apierrors.IsNotFound(err):
		if len(subjects) == 0 {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, r.Create(ctx, r.roleBinding(req.NamespacedName, subjects))
	case err != nil:
		return ctrl.Result{}, err
	case len(subjects) == 0 || current.RoleRef != r.roleRef():
		// No pod needs it, or it binds another role (roleRef cannot change): delete it. Its deletion brings
		// this namespace back, to create it again if pods need it.
		return ctrl.Result{}, client.IgnoreNotFound(r.Delete(ctx, current, client.Preconditions{UID: &current.UID}))
	case !equality.Semantic.DeepEqual(current.Subjects, subjects):
		current.Subjects = subjects
		return ctrl.Result{}, r.Update(ctx, current)
	}
	return ctrl.Result{}, nil
}

// verifierSubjects are the distinct ServiceAccounts of the pods that may still run, sorted.
func verifierSubjects(namespace string, pods []corev1.Pod) []rbacv1.Subject {
	var subjects []rbacv1.Subject
	for _, sa := range serviceAccounts(pods) {
		subjects = append(subjects, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: namespace, Name: sa.Name})
	}
	return subjects
}

// serviceAccounts are the distinct ServiceAccounts of the pods that may still run, sorted by namespace and
// name.
func serviceAccounts(pods []corev1.Pod) []types.NamespacedName {
	var out []types.NamespacedName
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || p.Spec.ServiceAccountName == "" {
			continue
		}
		out = append(out, types.NamespacedName{Namespace: p.Namespace, Name: p.Spec.ServiceAccountName})
	}
	slices.SortFunc(out, func(a, b types.NamespacedName) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(out)
}

func (r *VerifierAccessReconciler) roleRef() rbacv1.RoleRef {
	return rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: r.ClusterRole}
}

func (r *VerifierAccessReconciler) roleBinding(key types.NamespacedName, subjects []rbacv1.Subject) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: map[string]string{
			v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue,
		}},
		RoleRef:  r.roleRef(),
		Subjects: subjects,
	}
}

// SetupWithManager watches the labelled pods (the cache holds only those, and of each only what this
// reconciler reads) and the RoleBindings it keeps.
func (r *VerifierAccessReconciler) SetupWithManager(mgr ctrl.Manager) error {
	toNamespace := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []ctrl.Request {
		return []ctrl.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: VerifierAccessName}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("verifieraccess").
		For(&rbacv1.RoleBinding{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetName() == VerifierAccessName
		}))).
		Watches(&corev1.Pod{}, toNamespace, builder.WithPredicates(podComesOrGoes)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Complete(r)
}

// VerifierFlowSchemaReconciler keeps one FlowSchema that classifies every request of the injected pods'
// ServiceAccounts (their verifiers alone hold those tokens) into the verifiers' priority level, so that a
// decision's Lease write is bounded by kube2fa's share like the rest of a verifier's traffic. No labelled
// pod, no FlowSchema.
type VerifierFlowSchemaReconciler struct {
	client.Client
	// PriorityLevel is the verifiers' PriorityLevelConfiguration.
	PriorityLevel string
}

// Reconcile brings the FlowSchema in line with the labelled pods of every namespace.
func (r *VerifierFlowSchemaReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	var pods corev1.PodList
	if err := r.List(ctx, &pods, client.HasLabels{inject.LabelPolicy}); err != nil {
		return ctrl.Result{}, err
	}
	sas := serviceAccounts(pods.Items)
	want := InjectedVerifiersFlowSchema(r.PriorityLevel, sas)
	current := &flowcontrolv1.FlowSchema{}
	err := r.Get(ctx, client.ObjectKey{Name: VerifierFlowSchemaName}, current)
	switch {
	case apierrors.IsNotFound(err):
		if len(sas) == 0 {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, r.Create(ctx, want)
	case err != nil:
		return ctrl.Result{}, err
	case len(sas) == 0:
		return ctrl.Result{}, client.IgnoreNotFound(r.Delete(ctx, current, client.Preconditions{UID: &current.UID}))
	case !equality.Semantic.DeepEqual(current.Spec, want.Spec):
		current.Spec = want.Spec
		return ctrl.Result{}, r.Update(ctx, current)
	}
	return ctrl.Result{}, nil
}

// InjectedVerifiersFlowSchema is the FlowSchema VerifierFlowSchemaName for the verifiers running as sas:
// everything they ask goes to level, distinguished by namespace as the shipped kube2fa-verifiers is, so that
// one application's flood queues behind itself.
func InjectedVerifiersFlowSchema(level string, sas []types.NamespacedName) *flowcontrolv1.FlowSchema {
	subjects := make([]flowcontrolv1.Subject, 0, len(sas))
	for _, sa := range sas {
		subjects = append(subjects, flowcontrolv1.Subject{Kind: flowcontrolv1.SubjectKindServiceAccount,
			ServiceAccount: &flowcontrolv1.ServiceAccountSubject{Namespace: sa.Namespace, Name: sa.Name}})
	}
	return &flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: VerifierFlowSchemaName, Labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByValue}},
		Spec: flowcontrolv1.FlowSchemaSpec{
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: level},
			MatchingPrecedence:         verifierFlowSchemaPrecedence,
			DistinguisherMethod:        &flowcontrolv1.FlowDistinguisherMethod{Type: flowcontrolv1.FlowDistinguisherMethodByNamespaceType},
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects: subjects,
				ResourceRules: []flowcontrolv1.ResourcePolicyRule{{
					Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}, Namespaces: []string{"*"}, ClusterScope: true,
				}},
			}},
		},
	}
}

// SetupWithManager watches the labelled pods and the FlowSchema it keeps; every event is the one request.
func (r *VerifierFlowSchemaReconciler) SetupWithManager(mgr ctrl.Manager) error {
	one := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []ctrl.Request {
		return []ctrl.Request{{NamespacedName: types.NamespacedName{Name: VerifierFlowSchemaName}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("verifierflowschema").
		For(&flowcontrolv1.FlowSchema{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetName() == VerifierFlowSchemaName
		}))).
		Watches(&corev1.Pod{}, one, builder.WithPredicates(podComesOrGoes)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Complete(r)
}

// podComesOrGoes passes a pod's creation, deletion and end: a pod's ServiceAccount never changes.
var podComesOrGoes = predicate.Funcs{
	UpdateFunc: func(e event.TypedUpdateEvent[client.Object]) bool {
		return podPhase(e.ObjectOld) != podPhase(e.ObjectNew)
	},
}

func podPhase(o client.Object) corev1.PodPhase {
	if p, ok := o.(*corev1.Pod); ok {
		return p.Status.Phase
	}
	return ""
}

// podForAccess keeps of a cached pod what VerifierAccessReconciler reads.
func podForAccess(o any) (any, error) {
	p, ok := o.(*corev1.Pod)
	if !ok {
		return o, nil
	}
	return &corev1.Pod{
		TypeMeta: p.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Namespace: p.Namespace, Name: p.Name, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: map[string]string{inject.LabelPolicy: p.Labels[inject.LabelPolicy]}, DeletionTimestamp: p.DeletionTimestamp,
		},
		Spec:   corev1.PodSpec{ServiceAccountName: p.Spec.ServiceAccountName},
		Status: corev1.PodStatus{Phase: p.Status.Phase},
	}, nil
}
