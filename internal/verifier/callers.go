package verifier

import (
	"fmt"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// CallerAudience is the audience of the ServiceAccount tokens with which applications call a verifier over
// the network: a token made for the API server, or for anything else, is not accepted.
const CallerAudience = "kube2fa"

// Callers decides who may call a verifier that serves over the network: a caller presents a ServiceAccount
// token for CallerAudience (checked with a TokenReview) and must be allowed, by RBAC, to "create" the
// subresource twofactorpolicies/verify of the policy (checked with a SubjectAccessReview). So the
// permission is per policy, granted with an ordinary Role. Answers are cached briefly.
type Callers struct {
	authn             authenticator.Request
	authz             authorizer.Authorizer
	namespace, policy string
}

// retryBackoff bounds the retries of a TokenReview or SubjectAccessReview (apiserver's default).
var retryBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}

// NewCallers checks callers with the API server of cfg, for the policy in namespace.
func NewCallers(cfg *rest.Config, namespace, policy string) (*Callers, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating clientset: %w", err)
	}
	authn, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{
		Anonymous:                &apiserver.AnonymousAuthConfig{Enabled: false},
		TokenAccessReviewClient:  cs.AuthenticationV1(),
		TokenAccessReviewTimeout: 10 * time.Second,
		WebhookRetryBackoff:      &retryBackoff,
		CacheTTL:                 10 * time.Second,
		APIAudiences:             authenticator.Audiences{CallerAudience},
	}.New()
	if err != nil {
		return nil, fmt.Errorf("creating the caller authenticator: %w", err)
	}
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: cs.AuthorizationV1(),
		AllowCacheTTL:             10 * time.Second,
		DenyCacheTTL:              10 * time.Second,
		WebhookRetryBackoff:       &retryBackoff,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("creating the caller authorizer: %w", err)
	}
	return &Callers{authn: authn, authz: authz, namespace: namespace, policy: policy}, nil
}

// Check returns 0 when the request's caller may call the verifier, else the HTTP status and reason to
// refuse it with: 401 without a valid token for CallerAudience, 403 without the permission, 503 when the
// API server cannot say.
func (c *Callers) Check(r *http.Request) (int, string) {
	// A token that is missing, forged, expired or for another audience, or one the API server could not
	// review: refused alike, and the token is never echoed.
	// The TokenReview asks for the audiences the request's context names: kube2fa's alone.
	r = r.WithContext(authenticator.WithAudiences(r.Context(), authenticator.Audiences{CallerAudience}))
	res, ok, _ := c.authn.AuthenticateRequest(r)
	if !ok {
		return http.StatusUnauthorized, "a ServiceAccount token for audience " + CallerAudience + " is required"
	}
	decision, _, err := c.authz.Authorize(r.Context(), authorizer.AttributesRecord{
		User: res.User, Verb: "create", Namespace: c.namespace, APIGroup: v1alpha1.GroupVersion.Group,
		APIVersion: v1alpha1.GroupVersion.Version, Resource: "twofactorpolicies", Subresource: "verify",
		Name: c.policy, ResourceRequest: true,
	})
	switch {
	case err != nil:
		return http.StatusServiceUnavailable, "the caller's permission could not be checked"
	case decision != authorizer.DecisionAllow:
		return http.StatusForbidden, fmt.Sprintf("%s may not create twofactorpolicies/verify %s", res.User.GetName(), c.policy)
	}
	return 0, ""
}
