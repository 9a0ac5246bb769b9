package compattests

// A consumer group's coordinator SIGKILLed mid-consumption in a
// three-broker cluster: the group's offsets partition elects a new leader,
// which replays the partition and takes the group over. A franz-go member
// that commits after every poll must lose no acknowledged commit and skip no
// record, and a new member must resume exactly at the committed offsets.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pubg1/pubg1/coordinator"
	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	coordKillPartitions = 3
	// coordKillOffsetsPartitions keeps __consumer_offsets light: 6 Raft
	// groups instead of Kafka's default 50.
	coordKillOffsetsPartitions = 6
	// coordKillRecords over about 8 s: 15 records every 20 ms.
	coordKillRecords = 6000
	// coordKillConsumeWait bounds how long after the kill the member may
	// take to have consumed every acknowledged record.
	coordKillConsumeWait = 60 * time.Second
	// readerMaxPolls bounds a member's poll loop; a poll lasts at most
	// readerPollWait, so time bounds it long before.
	readerMaxPolls = 100000
	readerPollWait = time.Second
	// readerCommitWait bounds one synchronous commit, which franz-go retries
	// while it looks for a new coordinator.
	readerCommitWait = 20 * time.Second
	// readerMaxProblems bounds the problems a member keeps word for word.
	readerMaxProblems = 20
)

// TestClusterGroupCoordinatorKill SIGKILLs the coordinator of a consumer
// group while its only member consumes a stream a producer is still
// writing, and checks that:
//   - FindCoordinator names a new, live coordinator, and OffsetFetch through
//     a live broker answers every offset whose commit was acknowledged
//     before the kill (or a later one);
//   - the member goes on and consumes every acknowledged record, consuming a
//     record twice only at or after its last acknowledged commit;
//   - after the killed broker restarts, a new member of the group begins
//     every partition exactly at the committed offset.
func TestClusterGroupCoordinatorKill(t *testing.T) {
	// startCluster gives each broker only --id and --peers, and the brokers
	// create __consumer_offsets as soon as they first form a cluster, so
	// --offsets-topic-partitions 6 and --group-initial-rebalance-delay 0s
	// reach every broker process, and its restart, through the variables
	// `pubg1 serve` reads for those flags.
	t.Setenv("PUBG1_OFFSETS_TOPIC_PARTITIONS", fmt.Sprint(coordKillOffsetsPartitions))
	t.Setenv("PUBG1_GROUP_INITIAL_REBALANCE_DELAY", "0s")
	c := startCluster(t)
	ctx := testContext(t, 4*time.Minute)
	topic, group := groupNames(t)
	adm := kadm.NewClient(c.client(nil))
	createClusterTopic(ctx, t, adm, topic, coordKillPartitions, 3)
	checkReplicaSets(t, topic, c.waitLeadersEverywhere(ctx, topic, coordKillPartitions, nil), 3)
	// awaitLeaders also checks the partition count the settings asked for.
	c.waitLeadersEverywhere(ctx, coordinator.OffsetsTopic, coordKillOffsetsPartitions, nil)
	offsetsPart := coordinator.PartitionFor(group, coordKillOffsetsPartitions)

	reader := startGroupReader(t, ctx, c, "first member", group, topic)
	waitSoleMember(ctx, t, adm, group, topic)
	load := startLoad(c.client(nil, producerOpts()...), topic, loadSpec{
		prefix: "coord-kill", partitions: coordKillPartitions,
		maxRecords: coordKillRecords, maxTime: 40 * time.Second, perTick: 15, tick: 20 * time.Millisecond,
	})

	// Mid-consumption: a quarter of the stream consumed, a commit
	// acknowledged on every partition, the producer still going.
	progressed := ktest.Until(testContext(t, clusterWait), pollEvery, func() bool {
		n, committed := reader.progress()
		return n >= coordKillRecords/4 && len(committed) == coordKillPartitions
	})
	if n, committed := reader.progress(); !progressed {
		t.Fatalf("the member consumed %d records and has acknowledged commits on partitions %v within %v; want %d records and all %d partitions",
			n, slices.Sorted(maps.Keys(committed)), clusterWait, coordKillRecords/4, coordKillPartitions)
	}
	victim := agreedCoordinator(ctx, t, c, adm, group, offsetsPart)
	if acked, _ := load.counts(); acked >= coordKillRecords {
		t.Fatalf("the producer finished (%d acknowledged) before the kill; the kill must come mid-stream", acked)
	}

	killedAt := time.Now()
	c.broker(victim).Kill()
	// Every commit acknowledged by now was acknowledged by the dead
	// coordinator (a successor cannot be elected before it died).
	consumedAtKill, beforeKill := reader.progress()
	acked, _ := load.counts()
	t.Logf("SIGKILLed broker %d, coordinator of %s (leader of %s-%d), after %d records consumed and %d acknowledged; commits acknowledged before the kill: %v",
		victim, group, coordinator.OffsetsTopic, offsetsPart, consumedAtKill, acked, beforeKill)

	newCoord, firstNamed, allNamed := waitNewCoordinator(ctx, t, c, group, victim, killedAt)
	t.Logf("FindCoordinator named broker %d the new coordinator %v after the kill (first live broker), %v (every live broker)",
		newCoord, firstNamed.Round(time.Millisecond), allNamed.Round(time.Millisecond))
	if l := c.newestLeaders(coordinator.OffsetsTopic)[offsetsPart]; l.Leader != newCoord {
		t.Errorf("FindCoordinator names broker %d, but Metadata reports broker %d leader of %s-%d", newCoord, l.Leader, coordinator.OffsetsTopic, offsetsPart)
	}

	// Admin requests after the kill use a client that never cached the dead
	// broker as the coordinator. adm did, and its DescribeGroups would go on
	// dialling the dead broker until it is back: franz-go re-resolves a
	// sharded request's coordinator on NOT_COORDINATOR or once the broker
	// leaves Metadata, and PubG1's Metadata lists every peer, dead or not.
	survivor := kadm.NewClient(c.client(nil))
	afterKill := fetchCommitted(ctx, t, survivor, group, topic)
	t.Logf("OffsetFetch through a live broker answered %v, %v after the kill", afterKill, time.Since(killedAt).Round(time.Millisecond))
	for p, o := range beforeKill {
		if afterKill[p] < o {
			t.Errorf("partition %d: a commit of offset %d was acknowledged before the kill, but the new coordinator answers %d", p, o, afterKill[p])
		}
	}

	load.waitAcks(ctx, t, "every record acknowledged", func(total int, _ map[int32]int) bool { return total >= coordKillRecords })
	acks := load.finish(t)
	ends := endsOf(acks)
	consumeCtx, cancel := context.WithDeadline(ctx, killedAt.Add(coordKillConsumeWait))
	defer cancel()
	if !ktest.Until(consumeCtx, pollEvery, func() bool { return len(reader.missing(acks, 1)) == 0 }) {
		t.Fatalf("%v after the kill the member has not consumed these acknowledged records: %s",
			coordKillConsumeWait, strings.Join(reader.missing(acks, 10), "; "))
	}
	t.Logf("the member consumed all %d acknowledged records (end offsets %v) %v after the kill",
		len(acks), ends, time.Since(killedAt).Round(time.Millisecond))
	reader.logFailover(t, killedAt)
	reader.report(t)

	// The member leaves; its commits stay. The killed broker comes back.
	reader.close(t)
	waitGroupEmpty(ctx, t, survivor, group)
	c.broker(victim).Restart()
	c.waitReady(ctx)
	c.waitLeadersEverywhere(ctx, topic, coordKillPartitions, nil)
	c.waitLeadersEverywhere(ctx, coordinator.OffsetsTopic, coordKillOffsetsPartitions, nil)
	_, lastCommitted := reader.progress()
	committed := fetchCommitted(ctx, t, survivor, group, topic)
	for p := range int32(coordKillPartitions) {
		if committed[p] < lastCommitted[p] || committed[p] > ends[p] {
			t.Errorf("partition %d: committed offset %d after the restart; the member's last acknowledged commit was %d and the partition ends at %d",
				p, committed[p], lastCommitted[p], ends[p])
		}
	}
	t.Logf("after the restart of broker %d the group has committed %v (last acknowledged commits %v)", victim, committed, lastCommitted)

	// Records after the committed offsets, for a new member to resume at.
	more := produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "after-restart", 300, coordKillPartitions, -1)
	var pending []ackedRecord
	for _, a := range append(acks, more...) {
		if a.Offset >= committed[a.Partition] {
			pending = append(pending, a)
		}
	}
	next := startGroupReader(t, ctx, c, "new member", group, topic)
	resumeCtx, cancel := context.WithTimeout(ctx, coordKillConsumeWait)
	defer cancel()
	if !ktest.Until(resumeCtx, pollEvery, func() bool { return len(next.missing(pending, 1)) == 0 }) {
		t.Fatalf("the new member has not consumed these records within %v: %s", coordKillConsumeWait, strings.Join(next.missing(pending, 10), "; "))
	}
	first := next.firstOffsets()
	for p := range int32(coordKillPartitions) {
		if got, ok := first[p]; !ok || got != committed[p] {
			t.Errorf("partition %d: the new member began at offset %d (consumed anything: %v), the committed offset is %d", p, got, ok, committed[p])
		}
	}
	t.Logf("the new member began at %v and consumed the %d records from there", first, len(pending))
	next.report(t)
	next.close(t)
}

// agreedCoordinator waits until DescribeGroups, FindCoordinator through
// every live broker and the Metadata leader of the group's offsets
// partition name the same broker, and returns it.
func agreedCoordinator(ctx context.Context, t *testing.T, c *cluster, adm *kadm.Client, group string, offsetsPart int32) int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	var named int32
	var last string
	ok := ktest.Until(ctx, pollEvery, func() bool {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		defer dcancel()
		described, err := adm.DescribeGroups(dctx, group)
		if err == nil {
			err = described[group].Err
		}
		if err != nil {
			last = fmt.Sprintf("DescribeGroups: %v", err)
			return false
		}
		named = described[group].Coordinator.NodeID
		leader := c.newestLeaders(coordinator.OffsetsTopic)[offsetsPart].Leader
		if leader != named {
			last = fmt.Sprintf("DescribeGroups answered from broker %d, Metadata names broker %d leader of the offsets partition", named, leader)
			return false
		}
		for _, id := range c.liveIDs() {
			got, err := findCoordinatorAt(c.broker(id).Addr(), group)
			if err != nil || got != named {
				last = fmt.Sprintf("FindCoordinator through broker %d: %d (%v), DescribeGroups %d", id, got, err, named)
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("no agreement on the coordinator of %s within %v: %s", group, clusterWait, last)
	}
	return named
}

// waitNewCoordinator polls FindCoordinator through every live broker until
// all of them name the same live broker other than the dead one. It returns
// that broker and how long after the kill the first and the last live
// broker named it.
func waitNewCoordinator(ctx context.Context, t *testing.T, c *cluster, group string, dead int32, killedAt time.Time) (int32, time.Duration, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	var first time.Duration
	var named int32
	last := "no answer yet"
	ok := ktest.Until(ctx, pollEvery, func() bool {
		var answers []string
		agreed := map[int32]bool{}
		valid := true
		for _, id := range c.liveIDs() {
			got, err := findCoordinatorAt(c.broker(id).Addr(), group)
			answers = append(answers, fmt.Sprintf("broker %d: %d (%v)", id, got, err))
			if err != nil || got == dead || got < 1 || int(got) > clusterSize || !c.live(got) {
				valid = false
				continue
			}
			if first == 0 {
				first = time.Since(killedAt)
			}
			agreed[got] = true
			named = got
		}
		last = strings.Join(answers, ", ")
		return valid && len(agreed) == 1
	})
	if !ok {
		t.Fatalf("FindCoordinator named no live coordinator of %s within %v of the kill: %s", group, clusterWait, last)
	}
	return named, first, time.Since(killedAt)
}

// findCoordinatorAt asks one broker, with the batched form (v4), which
// broker coordinates group.
func findCoordinatorAt(addr, group string) (int32, error) {
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.SetVersion(4)
	req.CoordinatorType = 0
	req.CoordinatorKeys = []string{group}
	resp, err := requestTo(addr, req)
	if err != nil {
		return -1, err
	}
	fr := resp.(*kmsg.FindCoordinatorResponse)
	if len(fr.Coordinators) != 1 || fr.Coordinators[0].Key != group {
		return -1, fmt.Errorf("FindCoordinator for one key answered %d coordinators", len(fr.Coordinators))
	}
	co := fr.Coordinators[0]
	if err := kerr.ErrorForCode(co.ErrorCode); err != nil {
		return -1, err
	}
	return co.NodeID, nil
}

// fetchCommitted polls OffsetFetch until the group's coordinator answers
// for every partition of topic without error, and returns the committed
// offsets (-1 where none).
func fetchCommitted(ctx context.Context, t *testing.T, adm *kadm.Client, group, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	var out map[int32]int64
	var last error
	ok := ktest.Until(ctx, pollEvery, func() bool {
		fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
		defer fcancel()
		resp, err := adm.FetchOffsets(fctx, group)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			last = err
			return false
		}
		out = make(map[int32]int64)
		for p := range int32(coordKillPartitions) {
			out[p] = -1
			if o, ok := resp.Lookup(topic, p); ok {
				out[p] = o.At
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("OffsetFetch of %s got no answer without error within %v: %v", group, clusterWait, last)
	}
	return out
}

// waitSoleMember waits until the group is stable with one member that owns
// every partition of topic.
func waitSoleMember(ctx context.Context, t *testing.T, adm *kadm.Client, group, topic string) {
	t.Helper()
	waitGroupState(ctx, t, adm, group, "one stable member owning every partition", func(d kadm.DescribedGroup) bool {
		if d.State != "Stable" || len(d.Members) != 1 {
			return false
		}
		a, ok := d.Members[0].Assigned.AsConsumer()
		if !ok {
			return false
		}
		n := 0
		for _, at := range a.Topics {
			if at.Topic == topic {
				n += len(at.Partitions)
			}
		}
		return n == coordKillPartitions
	})
}

// waitGroupEmpty waits until the group has no member left.
func waitGroupEmpty(ctx context.Context, t *testing.T, adm *kadm.Client, group string) {
	t.Helper()
	waitGroupState(ctx, t, adm, group, "empty", func(d kadm.DescribedGroup) bool {
		return d.State == "Empty" && len(d.Members) == 0
	})
}

func waitGroupState(ctx context.Context, t *testing.T, adm *kadm.Client, group, what string, cond func(kadm.DescribedGroup) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	var last string
	ok := ktest.Until(ctx, pollEvery, func() bool {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		defer dcancel()
		described, err := adm.DescribeGroups(dctx, group)
		if err == nil {
			err = described[group].Err
		}
		if err != nil {
			last = err.Error()
			return false
		}
		d := described[group]
		last = fmt.Sprintf("state %s with %d members", d.State, len(d.Members))
		return cond(d)
	})
	if !ok {
		t.Fatalf("group %s not %s within %v: %s", group, what, clusterWait, last)
	}
}

// endsOf returns per partition the offset after the last acknowledged
// record.
func endsOf(acks []ackedRecord) map[int32]int64 {
	ends := make(map[int32]int64)
	for _, a := range acks {
		ends[a.Partition] = max(ends[a.Partition], a.Offset+1)
	}
	return ends
}

// groupReader is a franz-go group member with autocommit disabled: it
// commits what each poll returned, synchronously, before it polls again,
// and records what it consumed and which commits were acknowledged.
type groupReader struct {
	name     string
	cl       *kgo.Client
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	mu        sync.Mutex
	values    map[int32]map[int64]string // consumed values by partition and offset
	first     map[int32]int64            // first offset consumed per partition
	committed map[int32]int64            // highest offset an acknowledged commit set, per partition
	consumed  int                        // records consumed, duplicates included
	dups      int                        // records consumed more than once
	polls     []readerPoll               // every poll that returned records
	commitErr []string                   // failed commits, at most readerMaxProblems
	failed    int                        // failed commits
	fetchErr  []string                   // errors polls returned, at most readerMaxProblems
	problems  []string                   // violations, at most readerMaxProblems
	violated  int                        // violations
}

// readerPoll is one poll that returned records and the commit after it.
type readerPoll struct {
	at       time.Time
	records  int
	commitOK bool
	commitAt time.Time
}

// startGroupReader starts a member of group consuming topic from the
// earliest offset when the group has no commit.
func startGroupReader(t *testing.T, ctx context.Context, c *cluster, name, group, topic string) *groupReader {
	t.Helper()
	r := &groupReader{
		name: name, stop: make(chan struct{}), done: make(chan struct{}),
		values: make(map[int32]map[int64]string), first: make(map[int32]int64), committed: make(map[int32]int64),
	}
	r.cl = c.client(nil,
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(500*time.Millisecond),
	)
	go r.run(ctx)
	t.Cleanup(func() {
		r.halt()
		<-r.done
	})
	return r
}

func (r *groupReader) run(ctx context.Context) {
	defer close(r.done)
	for range readerMaxPolls {
		select {
		case <-r.stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		pctx, cancel := context.WithTimeout(ctx, readerPollWait)
		fs := r.cl.PollFetches(pctx)
		cancel()
		if fs.IsClientClosed() {
			return
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				r.note(&r.fetchErr, nil, fmt.Sprintf("%s %s/%d: %v", time.Now().Format("15:04:05.000"), topic, p, err))
			}
		})
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		r.consume(recs)
		cctx, cancel := context.WithTimeout(ctx, readerCommitWait)
		err := r.cl.CommitRecords(cctx, recs...)
		cancel()
		r.commitDone(recs, err)
	}
	r.note(&r.problems, &r.violated, fmt.Sprintf("poll loop ended after %d polls", readerMaxPolls))
}

// note appends msg to list, keeping at most readerMaxProblems, and counts
// it in n when n is given.
func (r *groupReader) note(list *[]string, n *int, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n != nil {
		*n++
	}
	if len(*list) < readerMaxProblems {
		*list = append(*list, msg)
	}
}

func (r *groupReader) consume(recs []*kgo.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.polls = append(r.polls, readerPoll{at: time.Now(), records: len(recs)})
	for _, rec := range recs {
		p, o, v := rec.Partition, rec.Offset, string(rec.Value)
		r.consumed++
		if r.values[p] == nil {
			r.values[p] = make(map[int64]string)
		}
		if _, ok := r.first[p]; !ok {
			r.first[p] = o
		}
		prev, again := r.values[p][o]
		r.values[p][o] = v
		if !again {
			continue
		}
		r.dups++
		var problem string
		switch c, ok := r.committed[p]; {
		case ok && o < c:
			problem = fmt.Sprintf("partition %d offset %d consumed again although a commit of offset %d was acknowledged", p, o, c)
		case prev != v:
			problem = fmt.Sprintf("partition %d offset %d consumed as %q and as %q", p, o, prev, v)
		default:
			continue
		}
		r.violated++
		if len(r.problems) < readerMaxProblems {
			r.problems = append(r.problems, problem)
		}
	}
}

func (r *groupReader) commitDone(recs []*kgo.Record, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	poll := &r.polls[len(r.polls)-1]
	poll.commitAt = time.Now()
	if err != nil {
		r.failed++
		if len(r.commitErr) < readerMaxProblems {
			r.commitErr = append(r.commitErr, fmt.Sprintf("%s: %v", poll.commitAt.Format("15:04:05.000"), err))
		}
		return
	}
	poll.commitOK = true
	for _, rec := range recs {
		r.committed[rec.Partition] = max(r.committed[rec.Partition], rec.Offset+1)
	}
}

// progress returns how many records were consumed and the acknowledged
// commits.
func (r *groupReader) progress() (int, map[int32]int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.consumed, maps.Clone(r.committed)
}

func (r *groupReader) firstOffsets() map[int32]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.first)
}

// missing lists up to limit acknowledged records not consumed (or consumed
// with another value).
func (r *groupReader) missing(acks []ackedRecord, limit int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, a := range acks {
		if v, ok := r.values[a.Partition][a.Offset]; !ok || v != a.Value {
			out = append(out, fmt.Sprintf("%q at %d/%d (consumed %q)", a.Value, a.Partition, a.Offset, v))
			if len(out) == limit {
				break
			}
		}
	}
	return out
}

// logFailover logs how consumption and commits went on around the kill.
func (r *groupReader) logFailover(t *testing.T, killedAt time.Time) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var lastBefore, firstAfter, commitAfter time.Time
	var gap time.Duration
	for i, p := range r.polls {
		if i > 0 && p.at.Sub(r.polls[i-1].at) > gap {
			gap = p.at.Sub(r.polls[i-1].at)
		}
		if p.at.Before(killedAt) {
			lastBefore = p.at
		} else if firstAfter.IsZero() {
			firstAfter = p.at
		}
		if p.commitOK && p.commitAt.After(killedAt) && commitAfter.IsZero() {
			commitAfter = p.commitAt
		}
	}
	since := func(at time.Time) string {
		if at.IsZero() {
			return "never"
		}
		return at.Sub(killedAt).Round(time.Millisecond).String()
	}
	t.Logf("%s around the kill: last records %v before it, first records %s after it, first acknowledged commit %s after it; longest gap between polls with records %v; %d records consumed (%d again), %d polls with records, %d failed commits",
		r.name, killedAt.Sub(lastBefore).Round(time.Millisecond), since(firstAfter), since(commitAfter), gap.Round(time.Millisecond),
		r.consumed, r.dups, len(r.polls), r.failed)
}

// report fails the test on every violation and logs failed commits and
// fetch errors.
func (r *groupReader) report(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.problems {
		t.Errorf("%s: %s", r.name, p)
	}
	if r.violated > len(r.problems) {
		t.Errorf("%s: %d more violations", r.name, r.violated-len(r.problems))
	}
	if r.failed > 0 {
		t.Logf("%s: %d commits failed (they are retried by the next one): %s", r.name, r.failed, strings.Join(r.commitErr, "; "))
	}
	if len(r.fetchErr) > 0 {
		t.Logf("%s: polls returned errors: %s", r.name, strings.Join(r.fetchErr, "; "))
	}
}

func (r *groupReader) halt() { r.stopOnce.Do(func() { close(r.stop) }) }

// close stops polling and closes the client, which leaves the group
// without committing.
func (r *groupReader) close(t *testing.T) {
	t.Helper()
	r.halt()
	select {
	case <-r.done:
	case <-time.After(readerCommitWait + readerPollWait + 5*time.Second):
		t.Fatalf("%s still polling or committing after it was stopped", r.name)
	}
	r.cl.Close()
}
