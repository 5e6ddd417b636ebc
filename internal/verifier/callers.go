package verifier

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/apimachinery/pkg/util/wait"
	authenticationclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
)

// CallerAudience is the audience of the ServiceAccount tokens with which applications call a verifier over
// the network: a token made for the API server, or for anything else, is not accepted.
const CallerAudience = "kube2fa"

// Callers decides who may call a verifier that serves over the network: a caller presents a ServiceAccount
// token for CallerAudience (checked with a TokenReview) and must be allowed, by RBAC, to "create" the
// subresource twofactorpolicies/verify of the policy (checked with a SubjectAccessReview). So the
// permission is per policy, granted with an ordinary Role. A token's verdict (allowed, or refused and why) is
// remembered for callerCacheTTL, by the token's hash: a revoked permission or token is refused within that.
//
// It makes the two reviews with client-go itself rather than through k8s.io/apiserver's delegating
// authenticator and authorizer, which do the same for any request attributes: for one fixed question they
// cost a verifier 20 MB of binary and 16 MiB of memory from its start (their dependencies: CEL, OpenAPI,
// audit, the egress selector), in every pod that runs one.
type Callers struct {
	tokens            authenticationclient.TokenReviewInterface
	access            authorizationclient.SubjectAccessReviewInterface
	namespace, policy string
	verdicts          *cache.LRUExpireCache // [sha256.Size]byte -> verdict
	reviewing         singleflight.Group    // by token hash: concurrent requests with one token share its reviews
}

// verdict is a Check's answer: status 0 allows.
type verdict struct {
	status int
	reason string
}

const (
	// callerCacheTTL is how long a token's verdict is remembered; callerCacheSize bounds how many are.
	callerCacheTTL  = 10 * time.Second
	callerCacheSize = 4096
	// reviewTimeout bounds each TokenReview or SubjectAccessReview.
	reviewTimeout = 10 * time.Second
)

// retryBackoff bounds the retries of a TokenReview or SubjectAccessReview the API server could not answer
// (the backoff k8s.io/apiserver gives its webhooks).
var retryBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}

// NewCallers checks callers with the API server of cfg, for the policy in namespace.
func NewCallers(cfg *rest.Config, namespace, policy string) (*Callers, error) {
	authn, err := authenticationclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the TokenReview client: %w", err)
	}
	authz, err := authorizationclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the SubjectAccessReview client: %w", err)
	}
	return &Callers{tokens: authn.TokenReviews(), access: authz.SubjectAccessReviews(), namespace: namespace, policy: policy,
		verdicts: cache.NewLRUExpireCache(callerCacheSize)}, nil
}

// Check returns 0 when the request's caller may call the verifier, else the HTTP status and reason to
// refuse it with: 401 without a valid token for CallerAudience, 403 without the permission, 503 when the
// API server cannot say (not remembered: the next request asks again).
func (c *Callers) Check(r *http.Request) (int, string) {
	token, ok := bearerToken(r)
	if !ok {
		return unauthenticated.status, unauthenticated.reason
	}
	key := sha256.Sum256([]byte(token)) // the token itself is never kept
	if v, ok := c.verdicts.Get(key); ok {
		return v.(verdict).status, v.(verdict).reason
	}
	v, _, _ := c.reviewing.Do(string(key[:]), func() (any, error) {
		v, err := c.review(r.Context(), token)
		if err != nil {
			return verdict{http.StatusServiceUnavailable, "the caller could not be checked: the API server did not answer"}, nil
		}
		c.verdicts.Add(key, v, callerCacheTTL)
		return v, nil
	})
	return v.(verdict).status, v.(verdict).reason
}

// unauthenticated refuses a missing, forged, expired or revoked token, or one for another audience, alike;
// the token is never echoed.
var unauthenticated = verdict{http.StatusUnauthorized, "a ServiceAccount token for audience " + CallerAudience + " is required"}

// review asks the API server who token is, for CallerAudience, and whether RBAC lets them create
// twofactorpolicies/verify of the policy; an error when it could not answer.
func (c *Callers) review(ctx context.Context, token string) (verdict, error) {
	tr := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{CallerAudience}}}
	if err := withRetries(ctx, func(ctx context.Context) (err error) {
		tr, err = c.tokens.Create(ctx, tr, metav1.CreateOptions{})
		return err
	}); err != nil {
		return verdict{}, err
	}
	// An authenticator that ignores audiences may say authenticated without naming ours: not enough.
	if !tr.Status.Authenticated || !slices.Contains(tr.Status.Audiences, CallerAudience) {
		return unauthenticated, nil
	}
	u := tr.Status.User
	extra := make(map[string]authorizationv1.ExtraValue, len(u.Extra))
	for k, v := range u.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: c.namespace, Verb: "create", Group: v1alpha1.GroupVersion.Group, Version: v1alpha1.GroupVersion.Version,
			Resource: "twofactorpolicies", Subresource: "verify", Name: c.policy,
		},
	}}
	if err := withRetries(ctx, func(ctx context.Context) (err error) {
		sar, err = c.access.Create(ctx, sar, metav1.CreateOptions{})
		return err
	}); err != nil {
		return verdict{}, err
	}
	if !sar.Status.Allowed || sar.Status.Denied {
		return verdict{http.StatusForbidden, fmt.Sprintf("%s may not create twofactorpolicies/verify %s", u.Username, c.policy)}, nil
	}
	return verdict{}, nil
}

// withRetries runs a review, each attempt bounded by reviewTimeout, again after a failure the API server
// may not repeat (no answer, 429, 5xx), within retryBackoff and ctx.
func withRetries(ctx context.Context, create func(context.Context) error) error {
	return retry.OnError(retryBackoff, func(err error) bool {
		var status apierrors.APIStatus
		if ctx.Err() != nil {
			return false
		}
		if errors.As(err, &status) {
			code := status.Status().Code
			return code == http.StatusTooManyRequests || code >= http.StatusInternalServerError
		}
		return true
	}, func() error {
		ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
		defer cancel()
		return create(ctx)
	})
}

// bearerToken is the token of the request's "Authorization: Bearer" header (the scheme in any case, as
// RFC 6750 reads it), if it has one.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}
