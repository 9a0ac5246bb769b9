package compattests

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// runAdmin runs a pubg1 admin command against b and returns its output and
// whether it succeeded.
func runAdmin(ctx context.Context, t *testing.T, b *brokerProc, args ...string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, brokerBin, append(args, "--brokers", b.Addr())...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("pubg1 %s: %v\n%s", strings.Join(args, " "), ctx.Err(), out.String())
	}
	return out.String(), err == nil
}

func mustAdmin(ctx context.Context, t *testing.T, b *brokerProc, args ...string) string {
	t.Helper()
	out, ok := runAdmin(ctx, t, b, args...)
	if !ok {
		t.Fatalf("pubg1 %s failed:\n%s", strings.Join(args, " "), out)
	}
	return out
}

// lineWith returns the fields of the first output line whose fields start
// with prefix.
func lineWith(out string, prefix ...string) []string {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(prefix) && strings.Join(f[:len(prefix)], " ") == strings.Join(prefix, " ") {
			return f
		}
	}
	return nil
}

// TestAdminCommands drives pubg1 topic and pubg1 group against a broker and
// checks what they print and do.
func TestAdminCommands(t *testing.T) {
	b := startGroupBroker(t)
	ctx := testContext(t, 3*time.Minute)
	const topic, group = "admin-topic", "admin-group"

	out := mustAdmin(ctx, t, b, "topic", "create", topic, "-p", "6", "-c", "retention.ms=3600000")
	if !strings.Contains(out, "created topic admin-topic with 6 partitions and replication factor 1") {
		t.Errorf("topic create printed:\n%s", out)
	}
	if out, ok := runAdmin(ctx, t, b, "topic", "create", topic); ok || !strings.Contains(out, "TOPIC_ALREADY_EXISTS") {
		t.Errorf("creating it again: success %v:\n%s", ok, out)
	}
	out = mustAdmin(ctx, t, b, "topic", "list")
	if f := lineWith(out, topic); len(f) != 4 || f[1] != "6" || f[2] != "1" || f[3] != "false" {
		t.Errorf("topic list printed:\n%s", out)
	}
	if lineWith(out, "__consumer_offsets") != nil {
		t.Errorf("topic list shows internal topics without --internal:\n%s", out)
	}
	if out := mustAdmin(ctx, t, b, "topic", "list", "--internal"); lineWith(out, "__consumer_offsets") == nil {
		t.Errorf("topic list --internal lacks __consumer_offsets:\n%s", out)
	}

	ends := produceGroupRecords(ctx, t, b, topic, 10)
	out = mustAdmin(ctx, t, b, "topic", "describe", topic)
	if !strings.Contains(out, "configs retention.ms=3600000") {
		t.Errorf("topic describe lacks the config:\n%s", out)
	}
	for p := range int32(groupPartitions) {
		if f := lineWith(out, fmt.Sprint(p), "1"); len(f) != 8 || f[5] != "0" || f[6] != fmt.Sprint(ends[p]) || f[7] != "-" {
			t.Errorf("topic describe, partition %d: %v in\n%s", p, f, out)
		}
	}

	// One member that does not consume: its commits make the lag.
	member, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ClientID("admin-member"), kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(), kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	go member.PollFetches(ctx) // joins the group; nothing is read from it
	adm := newAdmin(t, b)
	assigned := waitAssigned(ctx, t, adm, group, topic, 1)
	memberID := memberIDs(assigned)[0]
	commits := map[string]map[int32]kgo.EpochOffset{topic: {}}
	for p := range int32(groupPartitions) {
		commits[topic][p] = kgo.EpochOffset{Epoch: -1, Offset: int64(p)}
	}
	var commitErr error
	member.CommitOffsetsSync(ctx, commits, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		commitErr = err
		if err == nil {
			for _, rt := range resp.Topics {
				for _, rp := range rt.Partitions {
					if e := kerr.ErrorForCode(rp.ErrorCode); e != nil && commitErr == nil {
						commitErr = e
					}
				}
			}
		}
	})
	if commitErr != nil {
		t.Fatalf("committing: %v", commitErr)
	}

	out = mustAdmin(ctx, t, b, "group", "list")
	if f := lineWith(out, group); len(f) != 4 || f[1] != "Stable" || f[2] != "consumer" || f[3] != "1" {
		t.Errorf("group list printed:\n%s", out)
	}
	out = mustAdmin(ctx, t, b, "group", "describe", group)
	if !strings.Contains(out, "group admin-group  state Stable  protocol consumer/") || !strings.Contains(out, "members 1") {
		t.Errorf("group describe header:\n%s", out)
	}
	if f := lineWith(out, memberID); len(f) < 5 || f[1] != "-" || f[2] != "admin-member" || f[3] != "/127.0.0.1" || strings.Join(f[4:], " ") != topic+"[0 1 2 3 4 5]" {
		t.Errorf("group describe, member line %v in\n%s", f, out)
	}
	var total int64
	for p := range int32(groupPartitions) {
		lag := ends[p] - int64(p)
		total += lag
		f := lineWith(out, topic, fmt.Sprint(p))
		if want := []string{topic, fmt.Sprint(p), fmt.Sprint(p), fmt.Sprint(ends[p]), fmt.Sprint(lag), memberID, "-"}; strings.Join(f, " ") != strings.Join(want, " ") {
			t.Errorf("group describe, partition %d: %v, want %v", p, f, want)
		}
	}
	if f := lineWith(out, "TOTAL"); len(f) != 4 || f[1] != "15" || f[2] != "60" || f[3] != fmt.Sprint(total) {
		t.Errorf("group describe totals %v (want lag %d) in\n%s", f, total, out)
	}

	if out, ok := runAdmin(ctx, t, b, "group", "delete", group); ok || !strings.Contains(out, "NON_EMPTY_GROUP") {
		t.Errorf("deleting a group with members: success %v:\n%s", ok, out)
	}
	member.Close()
	out = mustAdmin(ctx, t, b, "group", "describe", group)
	if !strings.Contains(out, "state Empty") || lineWith(out, topic, "0") == nil {
		t.Errorf("group describe after the member left:\n%s", out)
	}
	if out := mustAdmin(ctx, t, b, "group", "delete", group); !strings.Contains(out, "deleted group admin-group") {
		t.Errorf("group delete printed:\n%s", out)
	}
	if out := mustAdmin(ctx, t, b, "group", "list"); lineWith(out, group) != nil {
		t.Errorf("deleted group still listed:\n%s", out)
	}
	if out := mustAdmin(ctx, t, b, "topic", "delete", topic); !strings.Contains(out, "deleted topic admin-topic") {
		t.Errorf("topic delete printed:\n%s", out)
	}
	if out, ok := runAdmin(ctx, t, b, "topic", "describe", topic); ok || !strings.Contains(out, "UNKNOWN_TOPIC_OR_PARTITION") {
		t.Errorf("describing the deleted topic: success %v:\n%s", ok, out)
	}
}
