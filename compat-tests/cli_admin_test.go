package compattests

// Tests of pubg1's admin commands, run as a user runs them: produce and
// consume, machine-readable output, cluster info and health, config and
// partition changes, and topic describe with a leader down.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"go.yaml.in/yaml/v3"
)

// cliOK runs pubg1 and fails the test unless it exits 0.
func cliOK(t *testing.T, input string, args ...string) string {
	t.Helper()
	r := runCLIWithInput(t, input, args...)
	if r.code != 0 {
		t.Fatalf("pubg1 %s: exit code %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// decode parses out, the JSON a command printed, into v.
func decode(t *testing.T, what, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s: not JSON (%v):\n%s", what, err, out)
	}
}

// record is one line of topic consume --output json.
type record struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Offset    int64   `json:"offset"`
	Timestamp int64   `json:"timestamp"`
	Key       *string `json:"key"`
	Value     *string `json:"value"`
	Headers   []struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	} `json:"headers"`
}

// describedTopic is one topic of topic describe --output json.
type describedTopic struct {
	Name              string            `json:"name"`
	ID                string            `json:"id"`
	PartitionCount    int               `json:"partition_count"`
	ReplicationFactor int               `json:"replication_factor"`
	Configs           map[string]string `json:"configs"`
	Error             string            `json:"error"`
	Partitions        []struct {
		Partition   int32   `json:"partition"`
		Leader      int32   `json:"leader"`
		Replicas    []int32 `json:"replicas"`
		ISR         []int32 `json:"isr"`
		StartOffset *int64  `json:"start_offset"`
		EndOffset   *int64  `json:"end_offset"`
		Error       string  `json:"error"`
	} `json:"partitions"`
}

// TestCLIProduceConsume produces lines with keys and headers and reads
// them back as JSON, with a --format, and as a group whose offsets group
// describe then reports.
func TestCLIProduceConsume(t *testing.T) {
	b := startBroker(t)
	brokers := "--brokers=" + b.Addr()
	cliOK(t, "", "topic", "create", "cli-pc", "-p", "2", brokers)

	cliOK(t, "k1:v1\nk2:v2:with colon\nk3:v3\n", "topic", "produce", "cli-pc", "--key-separator", ":", "-H", "source=cli", "-H", "eq=a=b", "--compression", "gzip", brokers)
	cliOK(t, "plain\n", "topic", "produce", "cli-pc", "--partition", "1", "--acks", "1", "--compression", "zstd", brokers)

	out := cliOK(t, "", "topic", "consume", "cli-pc", "-n", "4", "--output", "json", brokers)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("consume -n 4 printed %d lines:\n%s", len(lines), out)
	}
	got := map[string]record{}
	for _, l := range lines {
		var r record
		decode(t, "consume --output json", l, &r)
		if r.Topic != "cli-pc" || r.Value == nil || r.Timestamp <= 0 {
			t.Errorf("record %s", l)
			continue
		}
		key := "-"
		if r.Key != nil {
			key = *r.Key
		}
		got[key] = r
	}
	for k, v := range map[string]string{"k1": "v1", "k2": "v2:with colon", "k3": "v3", "-": "plain"} {
		r, ok := got[k]
		if !ok || *r.Value != v {
			t.Errorf("key %s: got %+v, want value %q", k, r, v)
			continue
		}
		var hs []string
		for _, h := range r.Headers {
			hs = append(hs, h.Key+"="+h.Value)
		}
		want := []string{"source=cli", "eq=a=b"}
		if k == "-" {
			want = nil
			if r.Partition != 1 {
				t.Errorf("--partition 1 record went to partition %d", r.Partition)
			}
		}
		if !slices.Equal(hs, want) {
			t.Errorf("key %s: headers %v, want %v", k, hs, want)
		}
	}

	out = cliOK(t, "", "topic", "consume", "cli-pc", "-n", "4", "--from", "beginning", "--format", `%k|%v|%h|%p\n`, brokers)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	sort.Strings(lines)
	want := []string{"k1|v1|source=cli,eq=a=b|", "k2|v2:with colon|source=cli,eq=a=b|", "k3|v3|source=cli,eq=a=b|", "|plain||1"}
	sort.Strings(want)
	for i, w := range want {
		if i >= len(lines) || !strings.HasPrefix(lines[i], w) {
			t.Errorf("--format lines:\n%s\nwant prefixes %q", out, want)
			break
		}
	}

	// A group commits what it printed.
	cliOK(t, "", "topic", "consume", "cli-pc", "-n", "4", "--group", "cli-pc-group", "-o", "json", brokers)
	var groups []struct {
		Group   string `json:"group"`
		State   string `json:"state"`
		Offsets []struct {
			Topic           string `json:"topic"`
			Partition       int32  `json:"partition"`
			CommittedOffset *int64 `json:"committed_offset"`
			LogEndOffset    *int64 `json:"log_end_offset"`
			Lag             *int64 `json:"lag"`
		} `json:"offsets"`
		Totals struct {
			CommittedOffset int64 `json:"committed_offset"`
			Lag             int64 `json:"lag"`
		} `json:"totals"`
	}
	decode(t, "group describe --output json", cliOK(t, "", "group", "describe", "cli-pc-group", "--output", "json", brokers), &groups)
	if len(groups) != 1 || groups[0].Group != "cli-pc-group" || groups[0].Totals.CommittedOffset != 4 || groups[0].Totals.Lag != 0 || len(groups[0].Offsets) != 2 {
		t.Errorf("group describe: %+v", groups)
	}

	// From an offset, and from a timestamp after every record: nothing
	// to read then, so -n 1 would wait; --from end with a new record.
	out = cliOK(t, "", "topic", "consume", "cli-pc", "-n", "1", "--from", "1", "--format", `%p %o\n`, brokers)
	if !strings.HasSuffix(strings.TrimSpace(out), " 1") {
		t.Errorf("--from 1 printed %q", out)
	}
}

// TestCLIOutputFormats checks the JSON and YAML of the read commands and
// cluster info and health on one healthy broker.
func TestCLIOutputFormats(t *testing.T) {
	b := startBroker(t)
	brokers := "--brokers=" + b.Addr()
	cliOK(t, "", "topic", "create", "cli-out", "-p", "3", "-c", "retention.ms=3600000", brokers)
	cliOK(t, "a\nb\n", "topic", "produce", "cli-out", "--partition", "2", brokers)

	var listed []struct {
		Name              string `json:"name"`
		Partitions        int    `json:"partitions"`
		ReplicationFactor int    `json:"replication_factor"`
		Internal          bool   `json:"internal"`
	}
	decode(t, "topic list", cliOK(t, "", "topic", "list", "-o", "json", brokers), &listed)
	if len(listed) != 1 || listed[0].Name != "cli-out" || listed[0].Partitions != 3 || listed[0].ReplicationFactor != 1 {
		t.Errorf("topic list: %+v", listed)
	}

	var topics []describedTopic
	decode(t, "topic describe", cliOK(t, "", "topic", "describe", "cli-out", "-o", "json", brokers), &topics)
	if len(topics) != 1 || topics[0].PartitionCount != 3 || len(topics[0].Partitions) != 3 || topics[0].Configs["retention.ms"] != "3600000" || topics[0].ID == "" {
		t.Fatalf("topic describe: %+v", topics)
	}
	for _, p := range topics[0].Partitions {
		wantEnd := int64(0)
		if p.Partition == 2 {
			wantEnd = 2
		}
		if p.Error != "" || p.StartOffset == nil || *p.StartOffset != 0 || p.EndOffset == nil || *p.EndOffset != wantEnd || p.Leader != 1 {
			t.Errorf("partition %d: %+v", p.Partition, p)
		}
	}

	// YAML carries the same fields under the same names.
	var fromYAML []map[string]any
	if err := yaml.Unmarshal([]byte(cliOK(t, "", "topic", "describe", "cli-out", "-o", "yaml", brokers)), &fromYAML); err != nil {
		t.Fatalf("topic describe -o yaml: %v", err)
	}
	if len(fromYAML) != 1 || fromYAML[0]["name"] != "cli-out" || fromYAML[0]["partition_count"] != 3 {
		t.Errorf("topic describe -o yaml: %v", fromYAML)
	}
	// A config value that reads as a number stays a string.
	if cfg, _ := fromYAML[0]["configs"].(map[string]any); cfg["retention.ms"] != "3600000" {
		t.Errorf("topic describe -o yaml configs: %#v", fromYAML[0]["configs"])
	}

	// A missing topic is a row with an error, and exit code 1.
	r := runCLI(t, "topic", "describe", "cli-out", "cli-nosuch", "-o", "json", brokers)
	topics = nil
	decode(t, "topic describe with a missing topic", r.stdout, &topics)
	if r.code != 1 || len(topics) != 2 || topics[0].Error != "" || !strings.Contains(topics[1].Error, "UNKNOWN_TOPIC_OR_PARTITION") {
		t.Errorf("describe with a missing topic: exit code %d, %+v", r.code, topics)
	}

	var health struct {
		Healthy                   bool    `json:"healthy"`
		Brokers                   []int32 `json:"brokers"`
		OfflinePartitions         []any   `json:"offline_partitions"`
		UnderReplicatedPartitions []any   `json:"under_replicated_partitions"`
		LeaderlessPartitions      []any   `json:"leaderless_partitions"`
	}
	decode(t, "cluster health", cliOK(t, "", "cluster", "health", "-o", "json", brokers), &health)
	if !health.Healthy || !slices.Equal(health.Brokers, []int32{1}) || health.OfflinePartitions == nil || len(health.OfflinePartitions)+len(health.UnderReplicatedPartitions)+len(health.LeaderlessPartitions) != 0 {
		t.Errorf("cluster health: %+v", health)
	}
	if out := cliOK(t, "", "cluster", "health", brokers); !strings.HasPrefix(out, "cluster healthy\n") {
		t.Errorf("cluster health:\n%s", out)
	}

	var info struct {
		ClusterID  string `json:"cluster_id"`
		Controller int32  `json:"controller"`
		Brokers    []struct {
			ID        int32  `json:"id"`
			Host      string `json:"host"`
			Port      int32  `json:"port"`
			Listed    bool   `json:"listed"`
			Reachable bool   `json:"reachable"`
		} `json:"brokers"`
	}
	decode(t, "cluster info", cliOK(t, "", "cluster", "info", "-o", "json", brokers), &info)
	if info.ClusterID == "" || info.Controller != 1 || len(info.Brokers) != 1 || !info.Brokers[0].Listed || !info.Brokers[0].Reachable ||
		fmt.Sprintf("%s:%d", info.Brokers[0].Host, info.Brokers[0].Port) != b.Addr() {
		t.Errorf("cluster info: %+v", info)
	}
}

// TestCLIAlterConfigAddPartitions changes configs and partition counts
// and checks them with kadm.
func TestCLIAlterConfigAddPartitions(t *testing.T) {
	b := startBroker(t)
	ctx := testContext(t, time.Minute)
	adm := newAdmin(t, b)
	brokers := "--brokers=" + b.Addr()
	cliOK(t, "", "topic", "create", "cli-alter", "-p", "1", "-c", "retention.ms=3600000,cleanup.policy=compact", brokers)

	cliOK(t, "", "topic", "alter-config", "cli-alter", "--set", "segment.bytes=1048576,max.message.bytes=2000000", "--delete", "retention.ms", brokers)
	dynamic := func() map[string]string {
		t.Helper()
		rc, err := adm.DescribeTopicConfigs(ctx, "cli-alter")
		if err != nil {
			t.Fatal(err)
		}
		got, err := rc.On("cli-alter", nil)
		if err != nil || got.Err != nil {
			t.Fatalf("describing configs: %v %v", err, got.Err)
		}
		out := map[string]string{}
		for _, c := range got.Configs {
			if c.Source == 1 && c.Value != nil { // DYNAMIC_TOPIC_CONFIG
				out[c.Key] = *c.Value
			}
		}
		return out
	}
	want := map[string]string{"cleanup.policy": "compact", "segment.bytes": "1048576", "max.message.bytes": "2000000"}
	if got := dynamic(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("configs after alter-config: %v, want %v", got, want)
	}
	r := runCLI(t, "topic", "alter-config", "cli-alter", "--set", "no.such.config=1", brokers)
	if r.code != 1 || !strings.Contains(r.stdout, "INVALID_CONFIG") {
		t.Errorf("alter-config with an unknown config: exit code %d, stdout %q", r.code, r.stdout)
	}
	props := filepath.Join(t.TempDir(), "alter.properties")
	if err := os.WriteFile(props, []byte("# from a file\nretention.bytes=5000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cliOK(t, "", "topic", "alter-config", "cli-alter", "--config-file", props, brokers)
	want["retention.bytes"] = "5000000"
	if got := dynamic(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("configs after alter-config --config-file: %v, want %v", got, want)
	}

	cliOK(t, "", "topic", "add-partitions", "cli-alter", "--to", "4", brokers)
	tds, err := adm.ListTopics(ctx, "cli-alter")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tds["cli-alter"].Partitions); n != 4 {
		t.Errorf("after add-partitions --to 4: %d partitions", n)
	}
	r = runCLI(t, "topic", "add-partitions", "cli-alter", "--to", "2", brokers)
	if r.code != 1 || !strings.Contains(r.stdout, "INVALID_PARTITIONS") {
		t.Errorf("add-partitions shrinking: exit code %d, stdout %q", r.code, r.stdout)
	}
}

// TestCLIDescribeLeaderDown kills the broker that leads a partition of a
// topic without replicas, which then has no leader to answer for it: topic
// describe still answers at once, with that partition's row saying so, and
// cluster health reports it and exits 1.
func TestCLIDescribeLeaderDown(t *testing.T) {
	c := startCluster(t)
	ctx := testContext(t, time.Minute)
	adm := kadm.NewClient(c.client([]int32{1, 2}))
	createClusterTopic(ctx, t, adm, "cli-down", 6, 1)
	leaders := c.waitLeadersEverywhere(ctx, "cli-down", 6, nil)
	var victims []int32
	for p, l := range leaders {
		if l.Leader == 3 {
			victims = append(victims, p)
		}
	}
	if len(victims) == 0 || len(victims) == 6 {
		t.Fatalf("broker 3 leads partitions %v of 6; the test needs some, not all", victims)
	}
	commits := make(kadm.Offsets)
	for p := range int32(6) {
		commits.Add(kadm.Offset{Topic: "cli-down", Partition: p, At: 0, LeaderEpoch: -1})
	}
	if _, err := adm.CommitOffsets(ctx, "cli-down-group", commits); err != nil {
		t.Fatal(err)
	}
	c.broker(3).Kill()
	brokers := "--brokers=" + c.broker(1).Addr() + "," + c.broker(2).Addr()

	start := time.Now()
	var topics []describedTopic
	decode(t, "topic describe", cliOK(t, "", "topic", "describe", "cli-down", "-o", "json", brokers), &topics)
	took := time.Since(start)
	if took > 15*time.Second {
		t.Errorf("topic describe took %v with a leader down", took)
	}
	if len(topics) != 1 || len(topics[0].Partitions) != 6 {
		t.Fatalf("topic describe: %+v", topics)
	}
	for _, p := range topics[0].Partitions {
		if slices.Contains(victims, p.Partition) {
			if p.Error == "" || p.EndOffset != nil {
				t.Errorf("partition %d, led by the dead broker: %+v", p.Partition, p)
			}
			continue
		}
		if p.Error != "" || p.EndOffset == nil || *p.EndOffset != 0 {
			t.Errorf("partition %d, led by a live broker: %+v", p.Partition, p)
		}
	}
	t.Logf("topic describe with broker 3 dead took %v; a dead partition's row: %q", took.Round(time.Millisecond), topics[0].Partitions[victims[0]].Error)

	// The group's coordinator may have been broker 3: group describe
	// answers once another took over, with the dead leader's partitions
	// in rows of their own.
	var groups []struct {
		Error   string `json:"error"`
		Offsets []struct {
			Partition    int32  `json:"partition"`
			LogEndOffset *int64 `json:"log_end_offset"`
			Error        string `json:"error"`
		} `json:"offsets"`
	}
	var r cliRun
	deadline := time.Now().Add(20 * time.Second)
	for {
		r = runCLI(t, "group", "describe", "cli-down-group", "-o", "json", brokers)
		if r.code == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	decode(t, "group describe", r.stdout, &groups)
	if r.code != 0 || len(groups) != 1 || len(groups[0].Offsets) != 6 {
		t.Fatalf("group describe with broker 3 dead: exit code %d, %+v\n%s", r.code, groups, r.stderr)
	}
	for _, o := range groups[0].Offsets {
		dead := slices.Contains(victims, o.Partition)
		if dead != (o.Error != "") || dead != (o.LogEndOffset == nil) {
			t.Errorf("group describe, partition %d (leader dead: %v): %+v", o.Partition, dead, o)
		}
	}

	// The partitions broker 3 led with replicas elsewhere stay offline
	// until they fail over (a fraction of a second); only those with no
	// other replica stay offline for good.
	var health struct {
		Healthy              bool  `json:"healthy"`
		OfflinePartitions    []any `json:"offline_partitions"`
		LeaderlessPartitions []any `json:"leaderless_partitions"`
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		r = runCLI(t, "cluster", "health", "-o", "json", brokers)
		health.OfflinePartitions, health.LeaderlessPartitions = nil, nil
		decode(t, "cluster health", r.stdout, &health)
		if len(health.OfflinePartitions)+len(health.LeaderlessPartitions) == len(victims) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r.code != 1 || health.Healthy || len(health.OfflinePartitions)+len(health.LeaderlessPartitions) != len(victims) {
		t.Errorf("cluster health with broker 3 dead: exit code %d, %+v", r.code, health)
	}
}

// TestCLIProduceConsumeClosedPort checks that produce and consume fail at
// once, in one line, when nothing answers, rather than retrying forever.
func TestCLIProduceConsumeClosedPort(t *testing.T) {
	addr := closedAddr(t)
	for _, args := range [][]string{
		{"topic", "produce", "t", "--brokers", addr},
		{"topic", "consume", "t", "--brokers", addr},
	} {
		r := runCLIWithInput(t, "x\n", args...)
		line := r.errorLine(t, 1, strings.Join(args[:2], " "))
		if !strings.Contains(line, "cannot reach broker "+addr+": connection refused") {
			t.Errorf("%s: %s", strings.Join(args[:2], " "), line)
		}
	}
}
