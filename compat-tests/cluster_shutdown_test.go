package compattests

import (
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/pubg1/pubg1/internal/ktest"
)

// TestClusterShutdownManyPartitions sends SIGTERM to all three brokers of
// a cluster holding 2,000 partitions with three replicas at once: each
// must exit cleanly within manyStopWait. They hand their leaderships to
// one another while the others shut down too, and each closes thousands
// of Raft groups; a broker of such a cluster once stayed "shutting down"
// for minutes at 100% of a core (the readers of its Raft streams spun
// while their sessions closed).
func TestClusterShutdownManyPartitions(t *testing.T) {
	const manyStopWait = 30 * time.Second
	c := startClusterOf(t, 3)
	adm := kadm.NewClient(c.client(nil))
	ctx := testContext(t, 3*time.Minute)
	const topic, partitions = "many", 2000
	resp, err := adm.CreateTopic(ctx, partitions, 3, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating %d partitions: %v", partitions, err)
	}
	led := 0
	if !ktest.Until(ctx, 200*time.Millisecond, func() bool {
		md, err := adm.Metadata(ctx, topic)
		if err != nil {
			return false
		}
		led = 0
		for _, p := range md.Topics[topic].Partitions {
			if p.Leader >= 0 {
				led++
			}
		}
		return led == partitions
	}) {
		t.Fatalf("%d of %d partitions have a leader", led, partitions)
	}
	errs := make([]error, len(c.brokers))
	began := time.Now()
	var wg sync.WaitGroup
	for i, b := range c.brokers {
		wg.Go(func() { errs[i] = b.proc.Shutdown(manyStopWait) })
	}
	wg.Wait()
	t.Logf("all three brokers exited %v after SIGTERM", time.Since(began).Round(10*time.Millisecond))
	for i, err := range errs {
		if err != nil {
			t.Errorf("broker %d: %v", i+1, err)
		}
	}
}
