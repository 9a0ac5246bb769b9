package ktest

import (
	"context"
	"testing"
	"time"
)

// Until calls cond every interval until it holds or ctx ends, and reports
// whether it held; it asks once more after ctx ends, so a condition that
// became true in the last interval is not missed.
func Until(ctx context.Context, interval time.Duration, cond func() bool) bool {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return cond()
		case <-tick.C:
		}
	}
}

// PollInterval is how often Eventually asks.
const PollInterval = 10 * time.Millisecond

// Eventually fails t unless cond holds within DefaultTimeout.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	if !Until(ctx, PollInterval, cond) {
		t.Fatalf("timed out after %v waiting for %s", DefaultTimeout, what)
	}
}
