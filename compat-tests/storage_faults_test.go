package compattests

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
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

// produceLarge is produceAcked with values padded to size bytes of
// letters that do not compress: records sent while a replica is frozen
// must outgrow what the socket buffers and the Raft streams' windows hold
// for it, or it thaws with them all.
func produceLarge(ctx context.Context, t *testing.T, cl *kgo.Client, topic, prefix string, n, size int) []ackedRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, deliveryTimeout)
	defer cancel()
	rng := rand.New(rand.NewPCG(uint64(n), uint64(size)))
	recs := make([]*kgo.Record, n)
	for i := range recs {
		v := fmt.Appendf(nil, "%s-%07d-", prefix, i)
		for len(v) < size {
			v = append(v, byte('a'+rng.IntN(26)))
		}
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
			followers := l.followers()
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
	w := wipeMetadataVoter(ctx, t, c)
	c.broker(w.keeper).Restart()
	if err := <-w.started; err != nil {
		t.Fatalf("restarting wiped broker %d: %v", w.ctrl, err)
	}
	c.waitReady(ctx)
	for _, id := range []int32{1, 2, 3} {
		m, err := metadataWithin(c.broker(id).Addr(), 5*time.Second, w.topics...)
		if err != nil {
			t.Fatalf("metadata from broker %d: %v", id, err)
		}
		for _, tp := range m.Topics {
			if tp.ErrorCode != 0 {
				t.Errorf("broker %d: topic %s created while broker %d was frozen is missing (error %d)", id, *tp.Topic, w.stale, tp.ErrorCode)
			}
		}
	}
}

// wipedMetadata is the state wipeMetadataVoter leaves.
type wipedMetadata struct {
	stale, keeper, ctrl int32        // the thawed, the killed and the wiped broker
	topics              []string     // created while stale was frozen
	started             <-chan error // the wiped broker's start
}

// wipeMetadataVoter runs the sequence of TestWipedMetadataVoter up to the
// point where the metadata is left with the stale broker and the wiped
// one, and checks that it elects no leader then.
func wipeMetadataVoter(ctx context.Context, t *testing.T, c *cluster) wipedMetadata {
	t.Helper()
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
	return wipedMetadata{stale: stale, keeper: keeper, ctrl: ctrl, topics: topics, started: started}
}

// TestUncleanMetadataElection leaves the metadata as TestWipedMetadataVoter
// does, with the stale broker and the one that lost its data, and has the
// operator force an election with `pubg1 topic elect-leaders --unclean
// __cluster_metadata`. The stale broker's metadata then stands: topics can
// be created again, and when the third broker returns, every broker agrees
// on it. (Topics created while it was frozen may have reached it in its
// socket buffers; those that did not are gone.)
func TestUncleanMetadataElection(t *testing.T) {
	c := startCluster(t)
	ctx := testContext(t, 4*time.Minute)
	w := wipeMetadataVoter(ctx, t, c)
	addr := c.broker(w.stale).Addr()
	if run := runCLI(t, "topic", "elect-leaders", "--brokers", addr, "__cluster_metadata"); run.code == 0 {
		t.Errorf("preferred election of the metadata leader succeeded:\n%s", run.stdout)
	}
	run := runCLI(t, "topic", "elect-leaders", "--unclean", "--timeout", "60s", "--brokers", addr, "__cluster_metadata")
	if run.code != 0 || !strings.Contains(run.stdout, "unclean election done") {
		t.Fatalf("unclean metadata election: exit %d\nstdout:\n%s\nstderr:\n%s", run.code, run.stdout, run.stderr)
	}
	if err := <-w.started; err != nil {
		t.Fatalf("restarting wiped broker %d: %v", w.ctrl, err)
	}
	const after = "created-after-unclean-election"
	createClusterTopic(ctx, t, kadm.NewClient(c.client([]int32{w.stale, w.ctrl})), after, 1, 3)
	c.broker(w.keeper).Restart()
	c.waitReady(ctx)
	var first []string
	for _, id := range []int32{1, 2, 3} {
		m, err := metadataWithin(c.broker(id).Addr(), 5*time.Second, append([]string{after}, w.topics...)...)
		if err != nil {
			t.Fatalf("metadata from broker %d: %v", id, err)
		}
		var known []string
		for _, tp := range m.Topics {
			if tp.ErrorCode == 0 {
				known = append(known, *tp.Topic)
			}
		}
		slices.Sort(known)
		if !slices.Contains(known, after) {
			t.Errorf("broker %d: topic %s created after the unclean election is missing", id, after)
		}
		if first == nil {
			first = known
			t.Logf("after the unclean election the metadata holds %d of the %d topics created while broker %d was frozen", len(known)-1, len(w.topics), w.stale)
		} else if !slices.Equal(known, first) {
			t.Errorf("brokers disagree on the topics: broker %d knows %v, broker 1 %v", id, known, first)
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
// The metadata leader plays each part in turn (the frozen replica, the
// killed leader, the wiped replica) and none: the election must not wait
// for the metadata to find the dead leader, nor count it alive.
func TestUncleanElection(t *testing.T) {
	for _, role := range []string{"stale", "dead", "wiped", "none"} {
		t.Run("metadata-leader-"+role, func(t *testing.T) { uncleanElection(t, role) })
	}
}

// uncleanElection runs TestUncleanElection with the metadata leader as
// the replica of the given role, or as no replica ("none").
func uncleanElection(t *testing.T, role string) {
	c := startClusterOf(t, 5)
	ctx := testContext(t, 4*time.Minute)
	const topic = "unclean"
	m, err := metadataOf(c.broker(1).Addr())
	if err != nil || m.ControllerID < 1 {
		t.Fatalf("metadata: %v (controller %d)", err, m.ControllerID)
	}
	var rest []int32
	for id := int32(1); id <= 5; id++ {
		if id != m.ControllerID {
			rest = append(rest, id)
		}
	}
	// The partition's replicas in preference order: the leader to be
	// killed, the replica to be frozen, the one to be wiped.
	replicas := map[string][]int32{
		"dead":  {m.ControllerID, rest[0], rest[1]},
		"stale": {rest[0], m.ControllerID, rest[1]},
		"wiped": {rest[0], rest[1], m.ControllerID},
		"none":  {rest[0], rest[1], rest[2]},
	}[role]
	createAssignedTopic(ctx, t, c.client(nil), topic, replicas)
	l := c.waitLeadersEverywhere(ctx, topic, 1, ledByPreferred)[0]
	keeper, stale, w := replicas[0], replicas[1], replicas[2]
	var others []int32
	for id := int32(1); id <= 5; id++ {
		if !slices.Contains(replicas, id) {
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
	t.Logf("metadata leader %d; stale %d, wiped %d, dead %d; after the unclean election broker %d leads at epoch %d", m.ControllerID, stale, w, keeper, nl.Leader, nl.Epoch)
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

// damageFiles flips one byte of every copy of marker in the files under
// dir, as a disk that changed stored bytes would, and returns how many
// copies it damaged.
func damageFiles(t *testing.T, dir string, marker []byte) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		changed := false
		for i := 0; ; {
			j := bytes.Index(b[i:], marker)
			if j < 0 {
				break
			}
			b[i+j] ^= 0x20 // flips the case of the first letter
			i += j + len(marker)
			n++
			changed = true
		}
		if changed {
			return os.WriteFile(path, b, d.Type().Perm()|0o600)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("damaging files under %s: %v", dir, err)
	}
	return n
}

// TestDamagedReplica flips bytes of a stored batch in one replica's files
// (Badger's value log and tables) while its broker is stopped. Once that
// replica leads again, a read of the damaged batch must not serve it: the
// broker reports the damage with the partition, hands the leadership to a
// replica with an intact copy, rebuilds its own copy from it, and every
// acknowledged record is then read intact, from the other replicas and
// from the rebuilt one.
func TestDamagedReplica(t *testing.T) {
	// Debug logs (Raft's included) show in the output of a failed run.
	c := startClusterWith(t, "--log-level", "debug")
	ctx := testContext(t, 4*time.Minute)
	const topic = "damaged"
	createClusterTopic(ctx, t, kadm.NewClient(c.client(nil)), topic, 1, 3)
	l := c.waitLeadersEverywhere(ctx, topic, 1, nil)[0]
	victim := l.Replicas[0] // the preferred replica, so an election brings it back
	acks := produceLarge(ctx, t, c.client(nil, append(producerOpts(), kgo.ProducerBatchCompression(kgo.NoCompression()))...), topic, "intact", 300, 2048)
	marker := []byte("intact-0000150-")

	c.broker(victim).Stop()
	if n := damageFiles(t, c.broker(victim).dataDir, marker); n == 0 {
		t.Fatalf("no stored copy of %q found under broker %d's data directory", marker, victim)
	}
	c.broker(victim).Restart()
	c.waitReady(ctx)
	c.waitLeadersEverywhere(ctx, topic, 1, nil)
	// The damage is found when the replica opens (its last entry) or
	// when it is read; either way it is rebuilt and then catches up.
	caughtUp := func() bool {
		out := c.broker(victim).Output()
		return strings.Contains(out, "stored log is damaged") && strings.Contains(out, "replica takes part in elections again")
	}
	elect := func() cliRun {
		t.Helper()
		run := runCLI(t, "topic", "elect-leaders", "--brokers", c.broker(victim).Addr(), topic+":0")
		if run.code == 0 {
			c.waitLeadersEverywhere(ctx, topic, 1, func(_ int32, l partLeader) bool { return l.Leader == victim })
		}
		return run
	}
	if !strings.Contains(c.broker(victim).Output(), "stored log is damaged") {
		// Not found yet: either the replica has yet to open (and finds
		// the damage then, so that it cannot lead until rebuilt), or it
		// opened without finding it, and a read through it does.
		switch run := elect(); {
		case run.code == 0:
			log, _ := c.consumeAll(ctx, topic, 1)
			reportLogProblems(t, "log read through the damaged leader", checkTopicLog(log, acks, true))
		case !strings.Contains(c.broker(victim).Output(), "stored log is damaged"):
			t.Fatalf("electing broker %d: exit %d\n%s%s", victim, run.code, run.stdout, run.stderr)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	if !ktest.Until(wctx, pollEvery, caughtUp) {
		t.Fatalf("broker %d did not report the damage and rebuild its replica", victim)
	}
	// The rebuilt replica holds the log again. Its leader promotes it to
	// a voter (back in the ISR) a moment after it has caught up; until
	// then the election answers PREFERRED_LEADER_NOT_AVAILABLE, as Kafka's
	// does for a preferred replica out of the ISR.
	run := elect()
	for run.code != 0 && strings.Contains(run.stdout, "PREFERRED_LEADER_NOT_AVAILABLE") && wctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
		run = elect()
	}
	if run.code != 0 {
		t.Fatalf("electing broker %d: exit %d\n%s%s", victim, run.code, run.stdout, run.stderr)
	}
	log, _ := c.consumeAll(ctx, topic, 1)
	reportLogProblems(t, "log read from the rebuilt replica", checkTopicLog(log, acks, true))
}

// TestWipedReplicaRejoins wipes a follower's data directory while the two
// other replicas run. The restarted replica is out of the ISR (a non-voter
// of the partition's Raft group) while it catches up, which on loopback
// may take less than a heartbeat, and must be in it again afterwards, as
// a voter: with the other follower killed, the leader and the rejoined
// replica commit new records, and once the leader is killed too and the
// other follower restarts, the rejoined replica's copy is the one that
// leads, with every acknowledged record. (raftmux's TestKeepMembers holds a
// replica back from catching up to see it demoted and promoted.)
func TestWipedReplicaRejoins(t *testing.T) {
	c := startCluster(t)
	ctx := testContext(t, 4*time.Minute)
	const topic = "rejoin"
	createClusterTopic(ctx, t, kadm.NewClient(c.client(nil)), topic, 1, 3)
	l := c.waitLeadersEverywhere(ctx, topic, 1, nil)[0]
	followers := l.followers()
	w, s := followers[0], followers[1]
	before := produceLarge(ctx, t, c.client(nil, producerOpts()...), topic, "before", 3000, 8192)
	c.broker(w).Kill()
	started := c.wipe(w)

	if err := <-started; err != nil {
		t.Fatalf("restarting wiped broker %d: %v", w, err)
	}
	c.waitReady(ctx)
	// In the ISR again once it has caught up.
	var sawOut bool
	bctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	back := ktest.Until(bctx, 20*time.Millisecond, func() bool {
		ls, err := c.leadersFrom(l.Leader, topic)
		if err != nil {
			return false
		}
		p := ls[0]
		if !slices.Contains(p.ISR, w) {
			sawOut = true
			return false
		}
		return !slices.Contains(p.Offline, w)
	})
	if !back {
		t.Fatalf("wiped replica %d is not back in the ISR", w)
	}
	t.Logf("wiped replica %d back in the ISR (seen out of it while catching up: %v)", w, sawOut)

	// The rejoined replica votes again (or will once it has caught up, if
	// the metadata was not told yet that it lags).
	c.holderLeads(ctx, topic, l, w, s, before, "during", 100)
}

// holderLeads checks that replica holder of partition 0 of topic (led by
// l, with other as its other follower) votes and holds every record: with
// other killed, the leader commits n records (named prefix) with holder
// alone; once the leader is killed too and other restarts, holder leads;
// and with every broker back, the log holds acks and those records, each
// once at its offset.
func (c *cluster) holderLeads(ctx context.Context, topic string, l partLeader, holder, other int32, acks []ackedRecord, prefix string, n int) {
	t := c.t
	t.Helper()
	c.broker(other).Kill()
	more := produceAcked(ctx, t, c.client([]int32{l.Leader, holder}, producerOpts()...), topic, prefix, n, 1, 0)
	c.broker(l.Leader).Kill()
	c.broker(other).Restart()
	nl := c.waitLeadersEverywhere(ctx, topic, 1, newerThan(map[int32]partLeader{0: l}))[0]
	if nl.Leader != holder {
		t.Errorf("broker %d leads after the leader was killed; only broker %d holds every record", nl.Leader, holder)
	}
	c.broker(l.Leader).Restart()
	c.waitReady(ctx)
	log, _ := c.consumeAll(ctx, topic, 1)
	reportLogProblems(t, fmt.Sprintf("log after broker %d led", holder), checkTopicLog(log, append(acks, more...), true))
}

// TestDamagedOnlyCopy flips bytes of the last stored batch of a single
// broker's partition while it is stopped. That is the only copy: the
// broker must start, report the damage with the partition, and not start
// that partition (produce and fetch answer KAFKA_STORAGE_ERROR), while its
// other partitions are served as before.
func TestDamagedOnlyCopy(t *testing.T) {
	b := startBroker(t)
	ctx := testContext(t, 2*time.Minute)
	adm := kadm.NewClient(newClient(t, b))
	const damaged, healthy = "only-copy", "healthy"
	if _, err := adm.CreateTopics(ctx, 1, 1, nil, damaged, healthy); err != nil {
		t.Fatalf("creating topics: %v", err)
	}
	cl := newClient(t, b, kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	// Values large enough for Badger's value log, which stores them as
	// they are. The intact partition is written first: Badger takes a
	// damaged entry of its newest value-log file for a write cut short and
	// drops the file's entries from there on, whichever partition they
	// belong to (they then read as damaged too).
	marker := "last-batch-of-the-only-copy-"
	for _, topic := range []string{healthy, damaged} {
		for _, v := range []string{"first", "second", marker} {
			value := append([]byte(v+topic+"-"), noise(4096)...)
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: value}).FirstErr(); err != nil {
				t.Fatalf("producing to %s: %v", topic, err)
			}
		}
	}
	b.Stop()
	if n := damageFiles(t, b.dataDir, []byte(marker+damaged)); n == 0 {
		t.Fatalf("no stored copy of the last batch found under the data directory")
	}
	b.Restart()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	reported := ktest.Until(rctx, 50*time.Millisecond, func() bool {
		for _, line := range strings.Split(b.Output(), "\n") {
			if strings.Contains(line, "only copy of the partition is damaged") && strings.Contains(line, `"topic":"`+damaged+`"`) {
				return true
			}
		}
		return false
	})
	if !reported {
		t.Errorf("the broker did not report the damaged partition %s", damaged)
	}
	produce := func(topic string) int16 {
		batch := batchSpec{producerID: -1, timestamp: time.Now(), values: [][]byte{[]byte("after")}}.build()
		resp, err := requestWithin(b.Addr(), produceRequest(9, topicRef{name: topic}, 0, batch), 15*time.Second)
		if err != nil {
			t.Fatalf("producing to %s: %v", topic, err)
		}
		return resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode
	}
	fetch := func(topic string) int16 {
		resp, err := requestWithin(b.Addr(), fetchRequest(11, topicRef{name: topic}, 0, 0, 0, 1), 15*time.Second)
		if err != nil {
			t.Fatalf("fetching from %s: %v", topic, err)
		}
		return resp.(*kmsg.FetchResponse).Topics[0].Partitions[0].ErrorCode
	}
	if code := produce(damaged); code != kerr.KafkaStorageError.Code {
		t.Errorf("produce to the damaged partition: %v, want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(code))
	}
	if code := fetch(damaged); code != kerr.KafkaStorageError.Code {
		t.Errorf("fetch from the damaged partition: %v, want KAFKA_STORAGE_ERROR", kerr.ErrorForCode(code))
	}
	if code := produce(healthy); code != 0 {
		t.Errorf("produce to the intact partition: %v", kerr.ErrorForCode(code))
	}
	if code := fetch(healthy); code != 0 {
		t.Errorf("fetch from the intact partition: %v", kerr.ErrorForCode(code))
	}
	if !b.Alive() {
		t.Fatalf("the broker died")
	}
}

// TestUncleanElectionAfterDemotion wipes a follower whose data directory
// then lives on a filesystem too small for the partition's log, so that it
// cannot catch up: its leader demotes it to a non-voter (it leaves the
// ISR). The leader is killed: the other follower, the one live voter of
// two, cannot be elected, and the partition stays offline until the
// operator runs an unclean election (the wiped replica has room by then,
// which changes nothing without a leader), which makes every replica a
// voter again on the live follower. That follower holds every
// acknowledged record (each commit after the demotion needed it), so once
// the old leader returns, the log is whole.
func TestUncleanElectionAfterDemotion(t *testing.T) {
	fs := mountSmallFS(t, 96<<20) // before the cluster: unmounted after it stops
	c := startClusterWith(t, "--disk-free-reserve", fmt.Sprint(48<<20))
	ctx := testContext(t, 4*time.Minute)
	const topic = "demoted"
	createClusterTopic(ctx, t, kadm.NewClient(c.client(nil)), topic, 1, 3)
	l := c.waitLeadersEverywhere(ctx, topic, 1, nil)[0]
	followers := l.followers()
	w, s := followers[0], followers[1]
	before := produceLarge(ctx, t, c.client(nil, append(producerOpts(), kgo.ProducerBatchCompression(kgo.NoCompression()))...), topic, "before", 8000, 8192)

	// The wiped follower restarts on the small filesystem.
	wb := c.broker(w)
	wb.Kill()
	c.dataDirOn(w, fs, false)
	wb.Restart()
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !ktest.Until(dctx, 50*time.Millisecond, func() bool {
		ls, err := c.leadersFrom(l.Leader, topic)
		return err == nil && !slices.Contains(ls[0].ISR, w) && !slices.Contains(ls[0].Offline, w)
	}) {
		t.Fatalf("wiped replica %d, which cannot catch up, was not taken out of the ISR", w)
	}

	c.broker(l.Leader).Kill()
	c.watchNoLeader(ctx, topic, l.Epoch, s, w)
	// Room for the wiped replica, whose acknowledgements the new leader
	// needs to commit (it may not lead before it has).
	resizeFS(t, fs, 1<<30)
	c.watchNoLeader(ctx, topic, l.Epoch, s, w)
	run := runCLI(t, "topic", "elect-leaders", "--unclean", "--timeout", "60s", "--brokers", c.broker(s).Addr(), topic+":0")
	if run.code != 0 || !strings.Contains(run.stdout, "unclean election done") {
		t.Fatalf("unclean election: exit %d\nstdout:\n%s\nstderr:\n%s", run.code, run.stdout, run.stderr)
	}
	nl := c.waitLeadersEverywhere(ctx, topic, 1, newerThan(map[int32]partLeader{0: l}))[0]
	if nl.Leader != s {
		t.Errorf("broker %d leads after the unclean election; broker %d holds every record", nl.Leader, s)
	}
	after := produceAcked(ctx, t, c.client([]int32{s, w}, producerOpts()...), topic, "after", 50, 1, 0)
	c.broker(l.Leader).Restart()
	c.waitReady(ctx)
	log, _ := c.consumeAll(ctx, topic, 1)
	reportLogProblems(t, "log after the unclean election", checkTopicLog(log, append(before, after...), true))
}

// createAssignedTopic creates topic with one partition on the given
// replicas, in preference order.
func createAssignedTopic(ctx context.Context, t *testing.T, cl *kgo.Client, topic string, replicas []int32) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 15000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, -1, -1
	ra := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
	ra.Partition, ra.Replicas = 0, replicas
	rt.ReplicaAssignment = append(rt.ReplicaAssignment, ra)
	req.Topics = append(req.Topics, rt)
	cctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	resp, err := req.RequestWith(cctx, cl)
	if err != nil {
		t.Fatalf("creating %s on %v: %v", topic, replicas, err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("creating %s on %v: %v (%v)", topic, replicas, err, resp.Topics[0].ErrorMessage)
	}
}
