package verifier

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kube2fa/kube2fa/api/v1alpha1"
	"github.com/kube2fa/kube2fa/internal/enrollment"
	"github.com/kube2fa/kube2fa/internal/strictjson"
)

// MaxBodyBytes is the largest request body accepted.
const MaxBodyBytes = 4 << 10

// DefaultRequestTimeout bounds an API request when Handler.Timeout is 0: longer than self-enrollment's wait
// for the manager's key (10s by default), shorter than the server's write timeout.
const DefaultRequestTimeout = 20 * time.Second

// Metrics are the verifier's Prometheus metrics. No label ever holds a user name.
type Metrics struct {
	Verifications *prometheus.CounterVec
	Lockouts      prometheus.Counter
	// SelfEnrollments counts self-enrollment requests by result: created (a new enrollment: watch it, a
	// takeover of a never-enrolled account looks like one), resumed, closed, rate_limited, too_many_pending.
	SelfEnrollments *prometheus.CounterVec
	// APIThrottled counts requests refused because the API server shed load (429): a sign that the
	// verifiers' priority level (config/apf) is too small for the logins, or that a flood is being held off.
	APIThrottled prometheus.Counter
	Duration     *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kube2fa_verifications_total", Help: "Code checks by result (verify and confirm).",
		}, []string{"result"}),
		Lockouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kube2fa_lockouts_total", Help: "Enrollments locked by wrong codes.",
		}),
		SelfEnrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kube2fa_self_enrollments_total",
			Help: "Self-enrollment requests by result: created, resumed, closed, rate_limited, too_many_pending.",
		}, []string{"result"}),
		APIThrottled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kube2fa_api_throttled_total",
			Help: "Requests answered 503 because the API server refused the verifier's request for load (429).",
		}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kube2fa_verifier_request_duration_seconds", Help: "HTTP request latency by route and status code.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "code"}),
	}
	reg.MustRegister(m.Verifications, m.Lockouts, m.SelfEnrollments, m.APIThrottled, m.Duration)
	return m
}

// Handler serves the verifier's HTTP API.
type Handler struct {
	V       *Verifier
	Metrics *Metrics
	Log     logr.Logger
	// Ready reports whether the policy is loaded and the caches synced.
	Ready func() error
	// Gatherer serves /metrics.
	Gatherer prometheus.Gatherer
	// Callers, when set, must allow the caller of every API request (not the probes and metrics): a
	// verifier that serves over the network. Nil on loopback, beside the application.
	Callers *Callers
	// Timeout bounds each API request (default DefaultRequestTimeout): past it, whatever the request waits
	// for (a hung API server, a slow watch) is abandoned and the answer is 503, so that requests cannot pile
	// up goroutines.
	Timeout time.Duration
}

// Routes returns the API, probes and metrics. Every answer is JSON, errors included: another method on a
// known path is 405 with an Allow header, an unknown path 404.
func (h *Handler) Routes() *http.ServeMux {
	mux := http.NewServeMux()
	h.handle(mux, "POST", "/v1/verify", h.verify)
	h.handle(mux, "POST", "/v1/enrollments", h.enroll)
	h.handle(mux, "GET", "/v1/enrollments/{user}", h.get)
	h.handle(mux, "POST", "/v1/enrollments/{user}/confirm", h.confirm)
	h.handle(mux, "POST", "/v1/enrollments/{user}/resync", h.resync)
	h.handle(mux, "POST", "/v1/enrollments/{user}/recovery-codes", h.regenerate)
	h.Probes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{"no such endpoint: " + r.URL.Path})
	})
	return mux
}

// Probes adds /healthz, /readyz and /metrics to mux.
func (h *Handler) Probes(mux *http.ServeMux) {
	only(mux, "GET", "/healthz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	only(mux, "GET", "/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := h.Ready(); err != nil {
			writeJSON(w, 503, errorBody{err.Error()})
			return
		}
		writeJSON(w, 200, map[string]string{"status": "ok"})
	})
	only(mux, "GET", "/metrics", promhttp.HandlerFor(h.Gatherer, promhttp.HandlerOpts{}).ServeHTTP)
}

// only serves path with f for method alone (GET serves HEAD too), and answers any other method with a JSON
// 405 that says which one is allowed: the mux's own 405 is plain text.
func only(mux *http.ServeMux, method, path string, f http.HandlerFunc) {
	mux.HandleFunc(method+" "+path, f)
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", method)
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{fmt.Sprintf("method %s is not allowed here; use %s", r.Method, method)})
	})
}

type apiFunc func(w http.ResponseWriter, r *http.Request) int

func (h *Handler) handle(mux *http.ServeMux, method, path string, f apiFunc) {
	pattern := method + " " + path
	only(mux, method, path, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx, cancel := context.WithTimeout(r.Context(), cmp.Or(h.Timeout, DefaultRequestTimeout))
		defer cancel()
		r = r.WithContext(ctx)
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		code := h.callerRefused(w, r) // before anything is read or counted
		if code == 0 {
			code = f(w, r)
		}
		h.Metrics.Duration.WithLabelValues(pattern, strconv.Itoa(code)).Observe(time.Since(start).Seconds())
	})
}

// callerRefused answers a request whose caller Callers does not allow, and returns its status; 0 when the
// caller is allowed (or no caller check is set).
func (h *Handler) callerRefused(w http.ResponseWriter, r *http.Request) int {
	if h.Callers == nil {
		return 0
	}
	if status, reason := h.Callers.Check(r); status != 0 {
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="kube2fa"`)
		}
		return writeJSON(w, status, errorBody{reason})
	}
	return 0
}

type errorBody struct {
	Error string `json:"error"`
}

type codeRequest struct {
	User string `json:"user"`
	Code string `json:"code"`
}

// verifyRequest is a code, or a recovery code in its place.
type verifyRequest struct {
	User         string `json:"user"`
	Code         string `json:"code"`
	RecoveryCode string `json:"recoveryCode"`
}

type decisionBody struct {
	Result            Result `json:"result"`
	RemainingAttempts *int32 `json:"remainingAttempts,omitempty"`
	RetryAfterSeconds *int64 `json:"retryAfterSeconds,omitempty"`
	// RecoveryCodes, on the confirmation that issues them and on a regeneration only.
	RecoveryCodes          []string `json:"recoveryCodes,omitempty"`
	RecoveryCodesRemaining *int32   `json:"recoveryCodesRemaining,omitempty"`
}

func (h *Handler) verify(w http.ResponseWriter, r *http.Request) int {
	var req verifyRequest
	if code := decode(w, r, &req); code != 0 {
		return code
	}
	if code := badUser(w, req.User); code != 0 {
		return code
	}
	if (req.Code == "") == (req.RecoveryCode == "") {
		return writeJSON(w, 400, errorBody{"exactly one of code and recoveryCode is required"})
	}
	if req.RecoveryCode != "" {
		d, err := h.V.VerifyRecoveryCode(r.Context(), req.User, req.RecoveryCode)
		return h.decision(w, d, err)
	}
	d, err := h.V.Verify(r.Context(), req.User, req.Code)
	return h.decision(w, d, err)
}

// regenerate replaces a user's recovery codes for a valid code: POST /v1/enrollments/{user}/recovery-codes.
func (h *Handler) regenerate(w http.ResponseWriter, r *http.Request) int {
	var req struct {
		Code string `json:"code"`
	}
	if code := decode(w, r, &req); code != 0 {
		return code
	}
	if code := badUser(w, r.PathValue("user")); code != 0 {
		return code
	}
	if req.Code == "" {
		return writeJSON(w, 400, errorBody{"code is required: new recovery codes cost a valid code"})
	}
	d, err := h.V.RegenerateRecoveryCodes(r.Context(), r.PathValue("user"), req.Code)
	return h.decision(w, d, err)
}

func (h *Handler) confirm(w http.ResponseWriter, r *http.Request) int {
	var req codeRequest
	if code := decode(w, r, &req); code != 0 {
		return code
	}
	if req.User != "" && req.User != r.PathValue("user") {
		return writeJSON(w, 400, errorBody{"user in the body differs from the path"})
	}
	if code := badUser(w, r.PathValue("user")); code != 0 {
		return code
	}
	if req.Code == "" {
		return writeJSON(w, 400, errorBody{"code is required"})
	}
	d, err := h.V.Confirm(r.Context(), r.PathValue("user"), req.Code)
	return h.decision(w, d, err)
}

type resyncRequest struct {
	Code     string `json:"code"`
	NextCode string `json:"nextCode"`
}

func (h *Handler) resync(w http.ResponseWriter, r *http.Request) int {
	var req resyncRequest
	if code := decode(w, r, &req); code != 0 {
		return code
	}
	if code := badUser(w, r.PathValue("user")); code != 0 {
		return code
	}
	if req.Code == "" || req.NextCode == "" {
		return writeJSON(w, 400, errorBody{"code and nextCode, two consecutive codes of the token, are required"})
	}
	d, err := h.V.Resync(r.Context(), r.PathValue("user"), req.Code, req.NextCode)
	return h.decision(w, d, err)
}

// decision writes a code check's answer: the status codes of the API contract.
func (h *Handler) decision(w http.ResponseWriter, d Decision, err error) int {
	if err != nil {
		return h.fail(w, err)
	}
	h.Metrics.Verifications.WithLabelValues(string(d.Result)).Inc()
	if d.LockedNow {
		h.Metrics.Lockouts.Inc()
	}
	body := decisionBody{Result: d.Result, RecoveryCodes: d.RecoveryCodes, RecoveryCodesRemaining: d.RecoveryCodesRemaining}
	status := 200
	switch d.Result {
	case Rejected:
		status, body.RemainingAttempts = 401, &d.RemainingAttempts
	case AlreadyUsed:
		status = 401
	case EnrollmentRequired, ReenrollmentRequired:
		status = 403
	case Locked:
		status = 429
		if d.RetryAfter > 0 {
			secs := int64(d.RetryAfter / time.Second)
			body.RetryAfterSeconds = &secs
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		}
	}
	return writeJSON(w, status, body)
}

type enrollRequest struct {
	User   string          `json:"user"`
	Method v1alpha1.Method `json:"method"`
}

func (h *Handler) enroll(w http.ResponseWriter, r *http.Request) int {
	var req enrollRequest
	if code := decode(w, r, &req); code != 0 {
		return code
	}
	if code := badUser(w, req.User); code != 0 {
		return code
	}
	switch req.Method {
	case "", v1alpha1.MethodTOTP, v1alpha1.MethodHOTP:
	default:
		return writeJSON(w, 400, errorBody{fmt.Sprintf("method must be TOTP or HOTP, not %q", req.Method)})
	}
	out, created, err := h.V.Enroll(r.Context(), req.User, req.Method)
	switch {
	case created:
		h.Metrics.SelfEnrollments.WithLabelValues("created").Inc()
	case errors.Is(err, ErrSelfEnrollmentClosed):
		h.Metrics.SelfEnrollments.WithLabelValues("closed").Inc()
	case errors.Is(err, ErrSelfEnrollmentRate):
		h.Metrics.SelfEnrollments.WithLabelValues("rate_limited").Inc()
		w.Header().Set("Retry-After", "1")
	case errors.Is(err, ErrTooManyPending):
		h.Metrics.SelfEnrollments.WithLabelValues("too_many_pending").Inc()
	case err == nil:
		h.Metrics.SelfEnrollments.WithLabelValues("resumed").Inc()
	}
	if err != nil {
		return h.fail(w, err)
	}
	if created {
		return writeJSON(w, 201, out)
	}
	return writeJSON(w, 200, out)
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) int {
	if code := badUser(w, r.PathValue("user")); code != 0 {
		return code
	}
	out, err := h.V.Get(r.Context(), r.PathValue("user"))
	if err != nil {
		return h.fail(w, err)
	}
	return writeJSON(w, 200, out)
}

// statuses maps each kind of refusal to the HTTP status that says why.
var statuses = []struct {
	kind   error
	status int
}{
	{ErrDisabled, http.StatusForbidden},
	{ErrMethodNotAllowed, http.StatusForbidden},
	{ErrNoEnrollment, http.StatusNotFound},
	{ErrAlreadyConfirmed, http.StatusConflict},
	{ErrNoKey, http.StatusConflict},
	{ErrOtherMethodPending, http.StatusConflict},
	{ErrNotConfirmed, http.StatusConflict},
	{ErrResyncOff, http.StatusForbidden},
	{ErrRecoveryOff, http.StatusForbidden},
	{ErrLocked, http.StatusTooManyRequests},
	{ErrSelfEnrollmentClosed, http.StatusForbidden},
	{ErrSelfEnrollmentRate, http.StatusTooManyRequests},
	{ErrTooManyPending, http.StatusServiceUnavailable},
	{ErrThrottled, http.StatusServiceUnavailable},
	{ErrClock, http.StatusServiceUnavailable},
	{ErrUnavailable, http.StatusServiceUnavailable},
}

// statusOf returns the HTTP status of a refusal and the message for the caller. Anything the verifier
// does not know as a refusal is a fault: 503 without its text, the verifier fails closed.
func statusOf(err error) (int, string) {
	for _, s := range statuses {
		if errors.Is(err, s.kind) {
			return s.status, err.Error()
		}
	}
	return http.StatusServiceUnavailable, "internal error"
}

// fail answers a refused request.
func (h *Handler) fail(w http.ResponseWriter, err error) int {
	status, msg := statusOf(err)
	if status >= 500 {
		h.Log.Error(err, "Refused a request: state could not be read or recorded")
		h.Metrics.Verifications.WithLabelValues("unavailable").Inc()
	}
	if errors.Is(err, ErrThrottled) {
		h.Metrics.APIThrottled.Inc()
	}
	if d := retryAfter(err); d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(d.Seconds())))
	}
	return writeJSON(w, status, errorBody{msg})
}

// decode reads a JSON body exactly (see strictjson.Unmarshal); it answers 400 itself and returns its status when the
// body is bad.
func decode(w http.ResponseWriter, r *http.Request, into any) int {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return writeJSON(w, 400, errorBody{fmt.Sprintf("request body is larger than %d bytes", MaxBodyBytes)})
		}
		return writeJSON(w, 400, errorBody{"request body could not be read"})
	}
	if err := strictjson.Unmarshal(raw, into); err != nil {
		return writeJSON(w, 400, errorBody{"request body: " + err.Error()})
	}
	return 0
}

// badUser answers 400 for a user that can never be a sane identity (see enrollment.ValidUser), and returns
// its status; 0 for a user the verifier serves.
func badUser(w http.ResponseWriter, user string) int {
	if err := enrollment.ValidUser(user); err != nil {
		return writeJSON(w, 400, errorBody{err.Error()})
	}
	return 0
}

func writeJSON(w http.ResponseWriter, status int, body any) int {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
	return status
}
