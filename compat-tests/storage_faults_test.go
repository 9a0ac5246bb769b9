package compattests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// offlineWindow is how long the tests watch a partition or the metadata
// that must not elect a leader without its data: failover takes under two
// seconds, so a wrongful election would show well within it.
const offlineWindow = 5 * time.Second

// wipe deletes a killed broker's data directory, as a replaced disk or a
// lost volume would, and starts it again with the same ID in the
// background: it serves only once the cluster it rejoins has a leader to
// catch up from. The returned channel gives the start's outcome.
func (c *cluster) wipe(id int32) <-chan error {
	c.t.Helper()
	b := c.broker(id)
	if b.Alive() {
		c.t.Fatalf("wiping running broker %d", id)
	}
	if err := os.RemoveAll(b.dataDir); err != nil {
		c.t.Fatalf("wiping broker %d's data directory: %v", id, err)
	}
	done := make(chan error, 1)
	go func() { done <- b.launch() }()
	return done
}

// produceLarge is produceAcked with values padded to size bytes: records
// sent while a replica is frozen must outgrow what the socket buffers and
// the Raft streams' windows hold for it, or it thaws with them all.
func produceLarge(ctx context.Context, t *testing.T, cl *kgo.Client, topic, prefix string, n, size int) []ackedRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, deliveryTimeout)
	defer cancel()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		v := fmt.Appendf(nil, "%s-%07d-", prefix, i)
		v = append(v, bytes.Repeat([]byte{'x'}, max(0, size-len(v)))...)
		recs[i] = &kgo.Record{Topic: topic, Partition: 0, Value: v}
	}
	res := cl.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("producing %d records to %s: %v", n, topic, err)
	}
	acks := make([]ackedRecord, 0, n)
	for _, r := range res {
		acks = append(acks, ackedRecord{Partition: r.Record.Partition, Offset: r.Record.Offset, Value: string(r.Record.Value), At: time.Now()})
	}
	return acks
}

// watchNoLeader fails the test if, within offlineWindow, any of the
// brokers ids reports a leader for the topic's partition 0 other than -1
// or one whose epoch is at most epoch (a leader from before the faults).
func (c *cluster) watchNoLeader(ctx context.Context, topic string, epoch int32, ids ...int32) {
	c.t.Helper()
	wctx, cancel := context.WithTimeout(ctx, offlineWindow)
	defer cancel()
	var bad string
	ktest.Until(wctx, 100*time.Millisecond, func() bool {
		for _, id := range ids {
			ls, err := c.leadersFrom(id, topic)
			if err != nil {
				continue // not serving yet, or no metadata leader
			}
			if l, ok := ls[0]; ok && l.Leader >= 0 && l.Epoch > epoch {
				bad = fmt.Sprintf("broker %d reports broker %d leader at epoch %d", id, l.Leader, l.Epoch)
				return true
			}
		}
		return false
	})
	if bad != "" {
		c.t.Fatalf("a replica without the acknowledged records was elected: %s", bad)
	}
}

// TestWipedDataDirectory loses a broker's data directory while the only
// other replica alive is stale, the sequence that lost acknowledged records
// before data directories were fenced: broker S is frozen while records
// are acknowledged by the two others; both are killed, one of them (W)
// loses its data directory and restarts with the same ID, and S thaws. W
// must not vote for S, so the partition stays offline until the replica
// with the data returns, and then every acknowledged record is there once
// at its acknowledged offset. W is the partition's follower, then its
// leader.
func TestWipedDataDirectory(t *testing.T) {
	for _, wiped := range []string{"follower", "leader"} {
		t.Run(wiped, func(t *testing.T) {
			c := startCluster(t)
			ctx := testContext(t, 4*time.Minute)
			topic := "wiped-" + wiped
			createClusterTopic(ctx, t, kadm.NewClient(c.client(nil)), topic, 1, 3)
			l := c.waitLeadersEverywhere(ctx, topic, 1, nil)[0]
			var followers []int32
			for _, r := range l.Replicas {
				if r != l.Leader {
					followers = append(followers, r)
				}
			}
			stale := followers[0]
			w, keeper := followers[1], l.Leader
			if wiped == "leader" {
				w, keeper = l.Leader, followers[1]
			}
			before := produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "before", 100, 1, 0)
			c.pause(stale)
			t.Logf("broker %d frozen; broker %d leads at epoch %d", stale, l.Leader, l.Epoch)
			during := produceLarge(ctx, t, c.client(c.liveIDs(), producerOpts()...), topic, "frozen", 2000, 4096)
			c.broker(w).Kill()
			c.broker(keeper).Kill()
			started := c.wipe(w)
			c.resume(stale)
			t.Logf("brokers %d and %d killed; broker %d restarted with an empty data directory; broker %d thawed", w, keeper, w, stale)
			c.watchNoLeader(ctx, topic, l.Epoch, stale, w)

			c.broker(keeper).Restart()
			if err := <-started; err != nil {
				t.Fatalf("restarting wiped broker %d: %v", w, err)
			}
			c.waitReady(ctx)
			c.waitLeadersEverywhere(ctx, topic, 1, newerThan(map[int32]partLeader{0: l}))
			after := produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "after", 100, 1, 0)
			acks := append(append(before, during...), after...)
			log, _ := c.consumeAll(ctx, topic, 1)
			reportLogProblems(t, "log after the wiped "+wiped+" rejoined", checkTopicLog(log, acks, true))

			// The wiped broker's own replica caught up: it can lead.
			c.broker(keeper).Kill()
			other := stale
			c.broker(other).Kill()
			c.broker(other).Restart()
			c.broker(keeper).Restart()
			c.waitReady(ctx)
			c.waitLeadersEverywhere(ctx, topic, 1, nil)
			log, _ = c.consumeAll(ctx, topic, 1)
			reportLogProblems(t, "log after a full restart", checkTopicLog(log, acks, true))
		})
	}
}

// TestWipedMetadataVoter is the same sequence for the metadata group:
// topics are created while broker S is frozen, then the metadata leader
// and the third broker are killed, the leader's data directory is wiped
// and it restarts, and S thaws. The metadata must not fall back to S's
// stale copy: once the third broker returns, every topic created is there.
func TestWipedMetadataVoter(t *testing.T) {
	c := startCluster(t)
	ctx := testContext(t, 4*time.Minute)
	m, err := metadataOf(c.broker(1).Addr())
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	ctrl := m.ControllerID
	var stale, keeper int32
	for _, id := range []int32{1, 2, 3} {
		if id == ctrl {
			continue
		}
		if stale == 0 {
			stale = id
		} else {
			keeper = id
		}
	}
	c.pause(stale)
	adm := kadm.NewClient(c.client([]int32{ctrl, keeper}))
	var topics []string
	for i := range 5 {
		name := fmt.Sprintf("created-while-%d-frozen-%d", stale, i)
		createClusterTopic(ctx, t, adm, name, 1, 3)
		topics = append(topics, name)
	}
	t.Logf("broker %d frozen; %d topics created through metadata leader %d", stale, len(topics), ctrl)
	c.broker(ctrl).Kill()
	c.broker(keeper).Kill()
	started := c.wipe(ctrl)
	c.resume(stale)
	// The stale broker must not lead the metadata (the wiped one, with an
	// empty log, cannot win the stale one's vote either way).
	wctx, cancel := context.WithTimeout(ctx, offlineWindow)
	defer cancel()
	var bad string
	ktest.Until(wctx, 100*time.Millisecond, func() bool {
		m, err := metadataWithin(c.broker(stale).Addr(), time.Second)
		if err == nil && m.ControllerID == stale {
			bad = fmt.Sprintf("broker %d leads the metadata", stale)
			return true
		}
		return false
	})
	if bad != "" {
		t.Fatalf("a metadata leader was elected without the committed metadata: %s", bad)
	}

	c.broker(keeper).Restart()
	if err := <-started; err != nil {
		t.Fatalf("restarting wiped broker %d: %v", ctrl, err)
	}
	c.waitReady(ctx)
	for _, id := range []int32{1, 2, 3} {
		m, err := metadataWithin(c.broker(id).Addr(), 5*time.Second, topics...)
		if err != nil {
			t.Fatalf("metadata from broker %d: %v", id, err)
		}
		for _, tp := range m.Topics {
			if tp.ErrorCode != 0 {
				t.Errorf("broker %d: topic %s created while broker %d was frozen is missing (error %d)", id, *tp.Topic, stale, tp.ErrorCode)
			}
		}
	}
}

// TestUncleanElection takes the wiped-follower sequence to a five-broker
// cluster, where the metadata keeps a majority with its data while the
// partition (three replicas) is left with its stale replica and the one
// that lost its data. The partition stays offline until the operator
// runs `pubg1 topic elect-leaders --unclean`; then the stale replica
// leads, the records acknowledged before the freeze are all there at
// their offsets, and those only the dead replica held are gone, as asked.
func TestUncleanElection(t *testing.T) {
	c := startClusterOf(t, 5)
	ctx := testContext(t, 4*time.Minute)
	const topic = "unclean"
	createClusterTopic(ctx, t, kadm.NewClient(c.client(nil)), topic, 1, 3)
	l := c.waitLeadersEverywhere(ctx, topic, 1, nil)[0]
	var followers []int32
	for _, r := range l.Replicas {
		if r != l.Leader {
			followers = append(followers, r)
		}
	}
	stale, w, keeper := followers[0], followers[1], l.Leader
	var others []int32
	for id := int32(1); id <= 5; id++ {
		if id != stale && id != w && id != keeper {
			others = append(others, id)
		}
	}
	before := produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "before", 100, 1, 0)
	c.pause(stale)
	during := produceLarge(ctx, t, c.client(c.liveIDs(), producerOpts()...), topic, "frozen", 2000, 4096)
	c.broker(w).Kill()
	c.broker(keeper).Kill()
	started := c.wipe(w)
	c.resume(stale)
	if err := <-started; err != nil { // the metadata has a majority: it catches up
		t.Fatalf("restarting wiped broker %d: %v", w, err)
	}
	c.watchNoLeader(ctx, topic, l.Epoch, others...)

	run := runCLI(t, "topic", "elect-leaders", "--brokers", c.broker(others[0]).Addr(), topic+":0")
	if run.code == 0 {
		t.Errorf("preferred election of a partition without a leader succeeded:\n%s", run.stdout)
	}
	run = runCLI(t, "topic", "elect-leaders", "--unclean", "--brokers", c.broker(others[0]).Addr(), topic+":0")
	if run.code != 0 || !strings.Contains(run.stdout, "unclean election done") {
		t.Fatalf("unclean election: exit %d\nstdout:\n%s\nstderr:\n%s", run.code, run.stdout, run.stderr)
	}
	nl := c.waitLeadersEverywhere(ctx, topic, 1, newerThan(map[int32]partLeader{0: l}))[0]
	t.Logf("stale %d, wiped %d, dead %d; after the unclean election broker %d leads at epoch %d", stale, w, keeper, nl.Leader, nl.Epoch)
	c.broker(keeper).Restart()
	c.waitReady(ctx)
	after := produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "after", 100, 1, 0)
	log, _ := c.consumeAll(ctx, topic, 1)
	// The records of the freeze that the stale replica had not received
	// are lost, by the operator's choice; it may have received some
	// before it froze. Everything else is there, each once, at the offset
	// it was acknowledged with.
	problems := checkTopicLog(log, append(before, after...), false)
	kept := 0
	for _, a := range during {
		if v, ok := log[a.Partition][a.Offset]; ok && v == a.Value {
			kept++
		}
	}
	frozen := 0
	for _, v := range log[0] {
		if strings.HasPrefix(v, "frozen-") {
			frozen++
		}
	}
	if frozen != kept {
		problems = append(problems, fmt.Sprintf("%d records of the freeze in the log, %d of them at their acknowledged offsets", frozen, kept))
	}
	if kept == len(during) {
		problems = append(problems, "the stale replica had every record of the freeze: the election lost nothing, so the test proved nothing")
	}
	t.Logf("%d of the %d records acknowledged during the freeze survived the unclean election", kept, len(during))
	reportLogProblems(t, "log after the unclean election", problems)
}
