package verifier

// ResolvedPolicy is the policy a replica decides by: a test waits for a policy edit to reach it.
var ResolvedPolicy = (*Verifier).resolvedPolicy
