package compattests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Consumer group tests run every client through one scenario
// (runGroupScenario): members share a topic's partitions, one leaves and the
// others take over, and a restarted member resumes from the committed
// offsets.

const (
	groupPartitions = 6
	// groupWait bounds each wait of a group scenario: a rebalance, or
	// consuming what was produced.
	groupWait = 90 * time.Second
	// groupPollEvery spaces the DescribeGroups of a wait for a group state.
	groupPollEvery = 100 * time.Millisecond
	// groupStopWait bounds a member's clean shutdown (commit and leave).
	groupStopWait = 30 * time.Second
)

// startGroupBroker starts a broker whose groups form without the initial
// rebalance delay and that accepts the short sessions the tests' clients use.
func startGroupBroker(t testing.TB, extraFlags ...string) *brokerProc {
	t.Helper()
	return startBroker(t, append([]string{"--group-initial-rebalance-delay", "0s", "--group-min-session-timeout", "1s", "--offsets-topic-partitions", "8"}, extraFlags...)...)
}

// consumed is one record a group member got.
type consumed struct {
	member    int
	partition int32
	offset    int64
}

// groupMember is one running member of a consumer group, whatever its
// client; its records arrive on the channel it was started with.
type groupMember interface {
	// Stop shuts the member down cleanly: it commits what it consumed and
	// leaves the group.
	Stop(t testing.TB)
}

// memberLauncher starts member id of group, consuming topic from the
// earliest offset when the group has no commit, sending what it gets to
// recs.
type memberLauncher func(t testing.TB, ctx context.Context, b *brokerProc, group, topic string, id int, recs chan<- consumed) groupMember

// groupNames derives a topic and group name from the test's name.
func groupNames(t testing.TB) (topic, group string) {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, t.Name())
	return name, name + "-group"
}

// produceGroupRecords produces n records to every partition of topic and
// returns the end offsets.
func produceGroupRecords(ctx context.Context, t testing.TB, b *brokerProc, topic string, n int) map[int32]int64 {
	t.Helper()
	// Uncompressed: not every client has every codec (kafka-python lacks snappy
	// without python3-snappy).
	cl := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()))
	var recs []*kgo.Record
	for p := range int32(groupPartitions) {
		for i := range n {
			recs = append(recs, &kgo.Record{Partition: p, Value: fmt.Appendf(nil, "%d-%d", p, i)})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing to %s: %v", topic, err)
	}
	cl.Close()
	return endOffsets(ctx, t, newAdmin(t, b), topic)
}

func endOffsets(ctx context.Context, t testing.TB, adm *kadm.Client, topic string) map[int32]int64 {
	t.Helper()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("listing end offsets of %s: %v", topic, err)
	}
	out := make(map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset of %s/%d: %v", topic, o.Partition, o.Err)
		}
		out[o.Partition] = o.Offset
	})
	return out
}

// committedOffsets fetches a group's committed offsets of topic; -1 where
// none.
func committedOffsets(ctx context.Context, t testing.TB, adm *kadm.Client, group, topic string) map[int32]int64 {
	t.Helper()
	resp, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetching offsets of %s: %v", group, err)
	}
	out := make(map[int32]int64)
	for p := range int32(groupPartitions) {
		out[p] = -1
		if o, ok := resp.Lookup(topic, p); ok {
			if o.Err != nil {
				t.Fatalf("offset of %s %s/%d: %v", group, topic, p, o.Err)
			}
			out[p] = o.At
		}
	}
	return out
}

// waitAssigned polls DescribeGroups until the group is stable with exactly
// n members, none of them in gone, whose assignments cover every partition
// of topic once. Any stable state that gives a partition to two members
// fails the test. It returns each member's partitions.
func waitAssigned(ctx context.Context, t testing.TB, adm *kadm.Client, group, topic string, n int, gone ...string) map[string][]int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, groupWait)
	defer cancel()
	var last string
	var assigned map[string][]int32
	if !ktest.Until(ctx, groupPollEvery, func() bool {
		described, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			last = err.Error()
			return false
		}
		d := described[group]
		owner := make(map[int32]string)
		assigned = make(map[string][]int32)
		ok := d.Err == nil && d.State == "Stable" && len(d.Members) == n
		for _, m := range d.Members {
			if slices.Contains(gone, m.MemberID) {
				ok = false
			}
			if !strings.HasPrefix(m.ClientHost, "/127.0.0.1") || m.ClientID == "" {
				t.Fatalf("member %s: client ID %q, host %q", m.MemberID, m.ClientID, m.ClientHost)
			}
			a, isConsumer := m.Assigned.AsConsumer()
			if !isConsumer {
				ok = false
				continue
			}
			for _, at := range a.Topics {
				if at.Topic != topic {
					continue
				}
				for _, p := range at.Partitions {
					if prev, dup := owner[p]; dup && d.State == "Stable" {
						t.Fatalf("partition %d is assigned to both %s and %s", p, prev, m.MemberID)
					}
					owner[p] = m.MemberID
					assigned[m.MemberID] = append(assigned[m.MemberID], p)
				}
			}
		}
		if ok && len(owner) == groupPartitions {
			return true
		}
		last = fmt.Sprintf("state %s, %d members, %d of %d partitions assigned: %v (err %v)", d.State, len(d.Members), len(owner), groupPartitions, assigned, d.Err)
		return false
	}) {
		t.Fatalf("group %s never had %d members sharing all of %s: last %s", group, n, topic, last)
	}
	return assigned
}

// consumedLog collects what members consumed.
type consumedLog struct {
	seen  map[int32]map[int64]int // partition -> offset -> times consumed
	first map[int32]int64         // first offset consumed per partition since reset
}

func newConsumedLog() *consumedLog {
	return &consumedLog{seen: make(map[int32]map[int64]int), first: make(map[int32]int64)}
}

func (l *consumedLog) add(c consumed) {
	if l.seen[c.partition] == nil {
		l.seen[c.partition] = make(map[int64]int)
	}
	l.seen[c.partition][c.offset]++
	if _, ok := l.first[c.partition]; !ok {
		l.first[c.partition] = c.offset
	}
}

// missing lists the offsets in [from[p], to[p]) not consumed yet, at most a
// few per partition.
func (l *consumedLog) missing(from, to map[int32]int64) []string {
	var out []string
	for p := range int32(groupPartitions) {
		var gaps []int64
		for o := max(from[p], 0); o < to[p] && len(gaps) < 5; o++ {
			if l.seen[p][o] == 0 {
				gaps = append(gaps, o)
			}
		}
		if len(gaps) > 0 {
			out = append(out, fmt.Sprintf("%d: %v", p, gaps))
		}
	}
	return out
}

// waitConsumed reads recs until every offset of [from, to) was consumed.
func (l *consumedLog) waitConsumed(ctx context.Context, t testing.TB, recs <-chan consumed, from, to map[int32]int64, what string) {
	t.Helper()
	timeout := time.NewTimer(groupWait)
	defer timeout.Stop()
	for len(l.missing(from, to)) > 0 {
		select {
		case c := <-recs:
			l.add(c)
		case <-timeout.C:
			t.Fatalf("%s: after %v these offsets were never consumed: %s", what, groupWait, strings.Join(l.missing(from, to), "; "))
		case <-ctx.Done():
			t.Fatalf("%s: %v; never consumed: %s", what, ctx.Err(), strings.Join(l.missing(from, to), "; "))
		}
	}
}

// drain takes whatever is queued on recs without waiting.
func (l *consumedLog) drain(recs <-chan consumed) {
	for {
		select {
		case c := <-recs:
			l.add(c)
		default:
			return
		}
	}
}

// runGroupScenario drives members of one client through a group's life:
//   - members share the partitions of a topic, none owned twice, and
//     consume everything produced before they started;
//   - one leaves; the others take over its partitions and consume what is
//     produced next;
//   - all stop; a restarted member resumes exactly at the committed offsets
//     (re-delivering only what was not committed, skipping nothing);
//   - kadm lists and describes the group.
func runGroupScenario(t testing.TB, members int, launch memberLauncher, brokerFlags ...string) {
	b := startGroupBroker(t, brokerFlags...)
	ctx := testContext(t, 5*time.Minute)
	topic, group := groupNames(t)
	adm := newAdmin(t, b)
	createTopic(ctx, t, adm, topic, groupPartitions, nil)
	zero := fromStart(groupPartitions)
	ends := produceGroupRecords(ctx, t, b, topic, 30)

	recs := make(chan consumed, 1<<16)
	log := newConsumedLog()
	running := make([]groupMember, members)
	for i := range running {
		running[i] = launch(t, ctx, b, group, topic, i, recs)
	}
	assigned := waitAssigned(ctx, t, adm, group, topic, members)
	t.Logf("%d members share the partitions: %v", members, assigned)
	log.waitConsumed(ctx, t, recs, zero, ends, "before any member left")

	// Member 0 leaves; the others take over its partitions.
	before := memberIDs(assigned)
	running[0].Stop(t)
	after := waitAssigned(ctx, t, adm, group, topic, members-1)
	var gone []string
	for _, id := range before {
		if _, ok := after[id]; !ok {
			gone = append(gone, id)
		}
	}
	if len(gone) == 0 {
		t.Fatalf("no member left the group: before %v, after %v", before, after)
	}
	t.Logf("after a member left: %v", after)
	ends = produceGroupRecords(ctx, t, b, topic, 20)
	log.waitConsumed(ctx, t, recs, zero, ends, "after a member left")

	for _, m := range running[1:] {
		m.Stop(t)
	}
	log.drain(recs)
	committed := committedOffsets(ctx, t, adm, group, topic)
	for p, o := range committed {
		if o < 0 || o > ends[p] {
			t.Fatalf("partition %d: committed offset %d after consuming up to %d", p, o, ends[p])
		}
	}
	t.Logf("committed %v of %v", committed, ends)

	// A restarted member resumes at the committed offsets.
	ends = produceGroupRecords(ctx, t, b, topic, 10)
	restarted := newConsumedLog()
	m := launch(t, ctx, b, group, topic, members, recs)
	alone := waitAssigned(ctx, t, adm, group, topic, 1)
	restarted.waitConsumed(ctx, t, recs, committed, ends, "after the restart")
	checkResumed(t, restarted, committed)

	// A member killed without closing leaves offsets uncommitted; its
	// successor gets them again once the dead member's session expires, and
	// nothing else.
	if k, ok := m.(interface{ Kill(t testing.TB) }); ok {
		ends = produceGroupRecords(ctx, t, b, topic, 10)
		restarted.waitConsumed(ctx, t, recs, committed, ends, "before the kill")
		k.Kill(t)
		restarted.drain(recs)
		committed = committedOffsets(ctx, t, adm, group, topic)
		redelivered := 0
		for p, o := range committed {
			redelivered += int(ends[p] - o)
		}
		ends = produceGroupRecords(ctx, t, b, topic, 5)
		again := newConsumedLog()
		m = launch(t, ctx, b, group, topic, members+1, recs)
		waitAssigned(ctx, t, adm, group, topic, 1, memberIDs(alone)...)
		again.waitConsumed(ctx, t, recs, committed, ends, "after the kill")
		checkResumed(t, again, committed)
		t.Logf("after the kill: committed %v, %d uncommitted records delivered again", committed, redelivered)
	}

	listed, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatalf("listing groups: %v", err)
	}
	if l, ok := listed[group]; !ok || l.State != "Stable" || l.ProtocolType != "consumer" {
		t.Errorf("ListGroups: %+v", listed)
	}
	m.Stop(t)
}

// checkResumed checks that a member that joined alone began every
// partition at the committed offset.
func checkResumed(t testing.TB, l *consumedLog, committed map[int32]int64) {
	t.Helper()
	for p := range int32(groupPartitions) {
		if first, ok := l.first[p]; !ok || first != committed[p] {
			t.Errorf("partition %d: the restarted member began at offset %d (consumed anything: %v), the committed offset is %d", p, first, ok, committed[p])
		}
	}
}

func memberIDs(assigned map[string][]int32) []string {
	ids := make([]string, 0, len(assigned))
	for id := range assigned {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// procMember is a member run by an external client process that prints
// one JSON object per line for each record: {"p": partition, "o": offset}.
type procMember struct {
	name   string
	cmd    *exec.Cmd
	done   chan struct{}
	stderr *syncBuffer
	err    error
}

// startProcMember runs argv as member id.
func startProcMember(t testing.TB, ctx context.Context, name string, id int, recs chan<- consumed, argv ...string) *procMember {
	t.Helper()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 5 * time.Second
	m := &procMember{name: fmt.Sprintf("%s member %d", name, id), cmd: cmd, done: make(chan struct{}), stderr: &syncBuffer{}}
	cmd.Stderr = m.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", m.name, err)
	}
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var rec struct {
				P *int32 `json:"p"`
				O *int64 `json:"o"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) != nil || rec.P == nil || rec.O == nil {
				fmt.Fprintf(m.stderr, "stdout: %s\n", sc.Text())
				continue
			}
			select {
			case recs <- consumed{member: id, partition: *rec.P, offset: *rec.O}:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		<-lines
		m.err = cmd.Wait()
		close(m.done)
	}()
	t.Cleanup(func() {
		select {
		case <-m.done:
		default:
			_ = cmd.Process.Kill()
			<-m.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", m.name, m.stderr.String())
		}
	})
	return m
}

// Kill ends the process with SIGKILL, as a crash would: it neither
// commits nor leaves.
func (m *procMember) Kill(t testing.TB) {
	t.Helper()
	_ = m.cmd.Process.Kill()
	select {
	case <-m.done:
	case <-time.After(groupStopWait):
		t.Fatalf("%s still running %v after SIGKILL", m.name, groupStopWait)
	}
}

// Stop sends SIGTERM, on which every client script closes its consumer.
func (m *procMember) Stop(t testing.TB) {
	t.Helper()
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(groupStopWait):
		_ = m.cmd.Process.Kill()
		<-m.done
		t.Fatalf("%s did not exit within %v of SIGTERM:\n%s", m.name, groupStopWait, m.stderr.String())
	}
	if m.err != nil {
		t.Fatalf("%s failed: %v\n%s", m.name, m.err, m.stderr.String())
	}
}
