package verifier

import "k8s.io/apimachinery/pkg/util/cache"

// ResolvedPolicy is the policy a replica decides by: a test waits for a policy edit to reach it.
var ResolvedPolicy = (*Verifier).resolvedPolicy

// RememberCallersBy makes c remember its callers' verdicts by clk: a test steps past their lifetime.
func RememberCallersBy(c *Callers, clk cache.Clock) {
	c.verdicts = cache.NewLRUExpireCacheWithClock(callerCacheSize, clk)
}

// CallerVerdictLifetime is how long a caller's verdict is remembered.
const CallerVerdictLifetime = callerCacheTTL
