package main

import (
	"math/rand/v2"
	"time"
)

// Reconnect delays. Full jitter (a uniform draw between zero and the exponential ceiling) keeps a
// fleet of agents that lost the same server from reconnecting in lock-step.
type backoffPolicy struct {
	Base, Cap time.Duration
}

var defaultBackoff = backoffPolicy{Base: 500 * time.Millisecond, Cap: 30 * time.Second}

// fullJitterDelay is the delay before the next attempt after failedAttempts consecutive failures.
// random returns a float in [0, 1).
func fullJitterDelay(failedAttempts int, policy backoffPolicy, random func() float64) time.Duration {
	if failedAttempts > 30 {
		failedAttempts = 30
	}
	ceiling := policy.Base << failedAttempts
	if ceiling > policy.Cap || ceiling <= 0 {
		ceiling = policy.Cap
	}
	return time.Duration(random() * float64(ceiling))
}

// goAwayDelay is the server's hint plus jitter: up to half the hint, at least a second.
func goAwayDelay(hint time.Duration, random func() float64) time.Duration {
	spread := hint / 2
	if spread < time.Second {
		spread = time.Second
	}
	return hint + time.Duration(random()*float64(spread))
}

// backoffFor caps the policy so that a welcomed agent retries at least every quarter of its lease.
func backoffFor(lease time.Duration) backoffPolicy {
	policy := defaultBackoff
	if lease > 0 && lease/4 < policy.Cap {
		policy.Cap = lease / 4
	}
	if policy.Base > policy.Cap {
		policy.Base = policy.Cap
	}
	return policy
}

func randomFloat() float64 { return rand.Float64() }
