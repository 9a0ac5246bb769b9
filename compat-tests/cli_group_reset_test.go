package compattests

// Tests of pubg1 group reset-offsets against a real broker: every target in
// a dry run (nothing changes) and with --execute (the coordinator has the
// new commits), clamping into the log, a group that does not exist yet,
// --all-groups, and the refusal while the group has a member.

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// resetRow is one row of group reset-offsets --output json.
type resetRow struct {
	Group         string `json:"group"`
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	CurrentOffset *int64 `json:"current_offset"`
	NewOffset     int64  `json:"new_offset"`
	Error         string `json:"error"`
}

const (
	resetTopic      = "cli-reset"
	resetPartitions = 3
	resetRecords    = 10 // per partition, one second apart
)

func TestCLIGroupReset(t *testing.T) {
	b := startGroupBroker(t)
	ctx := testContext(t, 90*time.Second)
	adm := newAdmin(t, b)
	brokers := "--brokers=" + b.Addr()
	const group = "cli-reset-group"
	createTopic(ctx, t, adm, resetTopic, resetPartitions, nil)

	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	produceTimed(ctx, t, b, base)
	// A member reads the first 6 records of each partition, commits and
	// leaves the group.
	consumeAndCommit(ctx, t, b, adm, group, 6)

	commits := func(group string) []int64 {
		t.Helper()
		resp, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatalf("fetching the offsets of %s: %v", group, err)
		}
		out := make([]int64, resetPartitions)
		for p := range out {
			out[p] = -1
			if o, ok := resp.Lookup(resetTopic, int32(p)); ok && o.Err == nil {
				out[p] = o.At
			}
		}
		return out
	}
	state := commits(group)
	if !slices.Equal(state, []int64{6, 6, 6}) {
		t.Fatalf("after consuming: committed %v, want [6 6 6]", state)
	}

	at := func(d time.Duration) time.Time { return base.Add(d) }
	for _, step := range []struct {
		args []string
		want map[int32]int64 // partition -> new offset
		warn string          // in stderr, once per partition clamped
	}{
		{[]string{"reset-offsets", "--topic", resetTopic, "--to-earliest"}, map[int32]int64{0: 0, 1: 0, 2: 0}, ""},
		{[]string{"reset-offsets", "--topic", resetTopic + ":1", "--to-latest"}, map[int32]int64{1: 10}, ""},
		{[]string{"reset-offsets", "--all-topics", "--to-offset", "4"}, map[int32]int64{0: 4, 1: 4, 2: 4}, ""},
		{[]string{"seek", "--topic", resetTopic + ":0,2", "--shift-by", "3"}, map[int32]int64{0: 7, 2: 7}, ""},
		{[]string{"reset-offsets", "--topic", resetTopic + ":0", "--shift-by", "-20"}, map[int32]int64{0: 0}, "offset -13 is before the log start offset 0; using 0"},
		{[]string{"reset-offsets", "--topic", resetTopic + ":2", "--to-offset", "50"}, map[int32]int64{2: 10}, "offset 50 is past the log end offset 10; using 10"},
		// Records are at base + 0s, 1s, ... 9s: the first at or after
		// the time, and the log end offset after the last.
		{[]string{"reset-offsets", "--topic", resetTopic, "--to-datetime", at(4500 * time.Millisecond).UTC().Format("2006-01-02T15:04:05.000Z07:00")}, map[int32]int64{0: 5, 1: 5, 2: 5}, ""},
		{[]string{"reset-offsets", "--topic", resetTopic + ":1", "--to-datetime", at(7 * time.Second).In(time.FixedZone("", 2*3600)).Format("2006-01-02T15:04:05.000-07:00")}, map[int32]int64{1: 7}, ""},
		{[]string{"reset-offsets", "--topic", resetTopic + ":0", "--to-datetime", strconv.FormatInt(at(2*time.Second).UnixMilli(), 10)}, map[int32]int64{0: 2}, ""},
		{[]string{"reset-offsets", "--topic", resetTopic + ":2", "--to-datetime", at(30 * time.Second).Format(time.RFC3339)}, map[int32]int64{2: 10}, ""},
		{[]string{"reset-offsets", "--all-topics", "--by-duration", "PT2H"}, map[int32]int64{0: 0, 1: 0, 2: 0}, ""},
		{[]string{"reset-offsets", "--topic", resetTopic + ":1", "--by-duration", "1m"}, map[int32]int64{1: 10}, ""},
		{[]string{"reset-offsets", "--all-topics", "--to-current"}, map[int32]int64{0: 0, 1: 10, 2: 0}, ""},
	} {
		what := strings.Join(step.args, " ")
		args := append([]string{"group", step.args[0], group}, step.args[1:]...)
		args = append(args, "-o", "json", brokers)
		for _, execute := range []bool{false, true} {
			var r cliRun
			if execute {
				r = runCLI(t, append(args, "--execute")...)
			} else {
				r = runCLI(t, args...)
			}
			if r.code != 0 {
				t.Fatalf("%s (execute %v): exit code %d\n%s", what, execute, r.code, r.stderr)
			}
			var rows []resetRow
			decode(t, what, r.stdout, &rows)
			got := map[int32]int64{}
			for _, row := range rows {
				if row.Group != group || row.Topic != resetTopic || row.Error != "" || row.CurrentOffset == nil || *row.CurrentOffset != state[row.Partition] {
					t.Errorf("%s (execute %v): row %+v; committed before: %v", what, execute, row, state)
				}
				got[row.Partition] = row.NewOffset
			}
			if fmt.Sprint(got) != fmt.Sprint(step.want) {
				t.Errorf("%s (execute %v): new offsets %v, want %v", what, execute, got, step.want)
			}
			if step.warn != "" && strings.Count(r.stderr, step.warn) != 1 || step.warn == "" && strings.Contains(r.stderr, "warning") {
				t.Errorf("%s (execute %v): stderr %q, want the warning %q once", what, execute, r.stderr, step.warn)
			}
			if !execute {
				if !strings.Contains(r.stderr, "dry run: no offsets were changed") {
					t.Errorf("%s: a dry run says %q", what, r.stderr)
				}
				if now := commits(group); !slices.Equal(now, state) {
					t.Fatalf("%s: a dry run changed the commits from %v to %v", what, state, now)
				}
				continue
			}
			for p, o := range step.want {
				state[p] = o
			}
			if now := commits(group); !slices.Equal(now, state) {
				t.Fatalf("%s --execute: committed %v, want %v", what, now, state)
			}
		}
	}

	// The table, for people.
	r := runCLI(t, "group", "reset-offsets", group, "--topic", resetTopic+":1", "--to-earliest", "--dry-run", brokers)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "GROUP TOPIC PARTITION CURRENT-OFFSET NEW-OFFSET" ||
		strings.Join(strings.Fields(lines[1]), " ") != group+" "+resetTopic+" 1 10 0" {
		t.Errorf("reset-offsets as a table: exit code %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A group that does not exist yet gets the commits, as with Kafka.
	var rows []resetRow
	decode(t, "a new group", cliOK(t, "", "group", "reset-offsets", "cli-reset-new", "--topic", resetTopic+":0,1", "--to-offset", "3", "--execute", "-o", "json", brokers), &rows)
	if len(rows) != 2 || rows[0].CurrentOffset != nil || rows[0].NewOffset != 3 || rows[1].Partition != 1 {
		t.Errorf("a new group: %+v", rows)
	}
	if got := commits("cli-reset-new"); !slices.Equal(got, []int64{3, 3, -1}) {
		t.Errorf("a new group: committed %v, want [3 3 -1]", got)
	}

	// --all-groups plans every group's own partitions.
	rows = nil
	decode(t, "--all-groups", cliOK(t, "", "group", "reset-offsets", "--all-groups", "--all-topics", "--to-latest", "-o", "json", brokers), &rows)
	var planned []string
	for _, row := range rows {
		planned = append(planned, fmt.Sprintf("%s/%d=%d", row.Group, row.Partition, row.NewOffset))
	}
	if want := []string{"cli-reset-group/0=10", "cli-reset-group/1=10", "cli-reset-group/2=10", "cli-reset-new/0=10", "cli-reset-new/1=10"}; !slices.Equal(planned, want) {
		t.Errorf("--all-groups: %v, want %v", planned, want)
	}

	// Mistakes that need no broker.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{group, "--topic", resetTopic}, "give one target: --to-earliest"},
		{[]string{group, "--topic", resetTopic, "--to-earliest", "--shift-by", "1"}, "--to-earliest and --shift-by can't be used together"},
		{[]string{group, "--topic", resetTopic, "--to-earliest", "--execute", "--dry-run"}, "--execute and --dry-run can't be used together"},
		{[]string{group, "--to-earliest"}, "give --topic or --all-topics"},
		{[]string{"--topic", resetTopic, "--to-earliest"}, "name a group or give --all-groups"},
		{[]string{group, "--topic", resetTopic + ":x", "--to-earliest"}, `"x" is not a partition number`},
		{[]string{group, "--all-topics", "--to-datetime", "yesterday"}, "--to-datetime yesterday: want"},
		{[]string{group, "--all-topics", "--by-duration", "P1H"}, "--by-duration P1H: want"},
	} {
		for _, name := range []string{"reset-offsets", "seek"} {
			r := runCLI(t, append([]string{"group", name}, append(tt.args, brokers)...)...)
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if r.code != 2 || len(lines) != 2 || !strings.HasPrefix(lines[0], "pubg1: ") || !strings.Contains(lines[0], tt.want) ||
				lines[1] != `run "pubg1 group reset-offsets --help" for usage` || r.stdout != "" {
				t.Errorf("group %s %s: exit code %d (want 2), stdout %q, stderr:\n%s", name, strings.Join(tt.args, " "), r.code, r.stdout, r.stderr)
			}
		}
	}
	// Mistakes the broker finds: one line, exit code 1.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{group, "--topic", "cli-reset-nosuch", "--to-earliest"}, "UNKNOWN_TOPIC_OR_PARTITION"},
		{[]string{group, "--topic", resetTopic + ":7", "--to-earliest"}, "topic " + resetTopic + " has no partition 7"},
		{[]string{"cli-reset-new", "--topic", resetTopic, "--shift-by", "1"}, "partition 2: it has no committed offset"},
	} {
		r := runCLI(t, append([]string{"group", "reset-offsets"}, append(tt.args, brokers)...)...)
		if line := r.errorLine(t, 1, strings.Join(tt.args, " ")); !strings.Contains(line, tt.want) || r.stdout != "" {
			t.Errorf("reset-offsets %s: %s, stdout %q", strings.Join(tt.args, " "), line, r.stdout)
		}
	}

	// While the group has a member, its offsets are the member's.
	member := newClient(t, b, kgo.ConsumerGroup(group), kgo.ConsumeTopics(resetTopic), kgo.DisableAutoCommit())
	go func() {
		for ctx.Err() == nil {
			if member.PollFetches(ctx).IsClientClosed() {
				return
			}
		}
	}()
	waitState(ctx, t, adm, group, "Stable")
	before := commits(group)
	r = runCLI(t, "group", "reset-offsets", group, "--all-topics", "--to-earliest", "--execute", brokers)
	want := "pubg1: Assignments can only be reset if the group '" + group + "' is inactive, but the current state is Stable."
	if line := r.errorLine(t, 1, "reset-offsets of an active group"); line != want || r.stdout != "" {
		t.Errorf("reset-offsets of an active group: %q, stdout %q; want %q", line, r.stdout, want)
	}
	// With --all-groups, the inactive ones are reset and the active one
	// refused.
	r = runCLI(t, "group", "reset-offsets", "--all-groups", "--all-topics", "--to-earliest", "--execute", "-o", "json", brokers)
	rows = nil
	decode(t, "--all-groups with an active group", r.stdout, &rows)
	stderrLines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if r.code != 1 || len(rows) != 2 || rows[0].Group != "cli-reset-new" || stderrLines[len(stderrLines)-1] != want {
		t.Errorf("--all-groups with an active group: exit code %d, rows %+v, stderr:\n%s", r.code, rows, r.stderr)
	}
	if got := commits(group); !slices.Equal(got, before) {
		t.Errorf("the active group's commits changed from %v to %v", before, got)
	}
	if got := commits("cli-reset-new"); !slices.Equal(got, []int64{0, 0, -1}) {
		t.Errorf("the inactive group's commits: %v, want [0 0 -1]", got)
	}
}

// produceTimed produces resetRecords records to every partition of
// resetTopic, the i-th with the timestamp base + i seconds.
func produceTimed(ctx context.Context, t *testing.T, b *brokerProc, base time.Time) {
	t.Helper()
	cl := newClient(t, b, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(resetTopic))
	var recs []*kgo.Record
	for p := range int32(resetPartitions) {
		for i := range resetRecords {
			recs = append(recs, &kgo.Record{Partition: p, Value: fmt.Appendf(nil, "%d-%d", p, i), Timestamp: base.Add(time.Duration(i) * time.Second)})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
}

// consumeAndCommit joins group, reads resetTopic until it has seen offset
// upTo-1 of every partition, commits upTo on each and leaves.
func consumeAndCommit(ctx context.Context, t *testing.T, b *brokerProc, adm *kadm.Client, group string, upTo int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumerGroup(group), kgo.ConsumeTopics(resetTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	last := make(map[int32]*kgo.Record)
	for len(last) < resetPartitions {
		fetches := cl.PollFetches(ctx)
		if err := fetches.Err(); err != nil {
			cl.Close()
			t.Fatalf("consuming as %s: %v", group, err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset == upTo-1 {
				last[r.Partition] = r
			}
		})
	}
	var recs []*kgo.Record
	for _, r := range last {
		recs = append(recs, r)
	}
	if err := cl.CommitRecords(ctx, recs...); err != nil {
		cl.Close()
		t.Fatalf("committing as %s: %v", group, err)
	}
	cl.Close() // leaves the group
	waitState(ctx, t, adm, group, "Empty")
}

// waitState polls DescribeGroups until group is in state.
func waitState(ctx context.Context, t *testing.T, adm *kadm.Client, group, state string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var last string
	if !ktest.Until(ctx, groupPollEvery, func() bool {
		described, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			last = err.Error()
			return false
		}
		last = described[group].State
		return last == state
	}) {
		t.Fatalf("group %s never reached %s; last %s", group, state, last)
	}
}
