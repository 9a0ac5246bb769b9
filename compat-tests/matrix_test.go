package compattests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pubg1/pubg1/compat-tests/matrix"
)

// TestMatrix runs every feature of the compatibility matrix against every
// client (see DRIVERS.md and matrix/matrix.go), then checks that the
// README's matrix is the one this run produced. cmd/compat-matrix runs it
// with -matrix.out and writes the table into the README.

var matrixOut = flag.String("matrix.out", "", "write the rendered compatibility matrix to this file instead of comparing it with the README")

// errUnsupported is what a driver answers for an operation its client
// cannot do.
var errUnsupported = errors.New("not supported by the client")

// opArgs are the arguments of a driver operation (DRIVERS.md).
type opArgs struct {
	Bootstrap     string
	Topic         string
	Partition     int32
	Partitions    int32
	RF            int16
	Count         int
	Prefix        string
	Acks          int
	Compression   string
	TimestampBase int64 // 0: the client's default timestamps
	Idempotent    bool
	DelayMs       int
	From          string
	Group         string
	Timeout       time.Duration
	// A transactional produce: the transactional ID and, per transaction,
	// whether it commits.
	TxnID  string
	Commit []bool
	// Consume at isolation level read_committed.
	ReadCommitted bool
}

// argv renders the arguments of op for a driver program.
func (a opArgs) argv(op string) []string {
	out := []string{op, "--bootstrap", a.Bootstrap, "--timeout-s", strconv.Itoa(int(a.Timeout / time.Second))}
	add := func(name, v string) { out = append(out, "--"+name, v) }
	if a.Topic != "" {
		add("topic", a.Topic)
	}
	switch op {
	case "create":
		add("partitions", strconv.Itoa(int(a.Partitions)))
		add("rf", strconv.Itoa(int(a.RF)))
	case "produce":
		add("partition", strconv.Itoa(int(a.Partition)))
		add("count", strconv.Itoa(a.Count))
		add("prefix", a.Prefix)
		add("acks", strconv.Itoa(a.Acks))
		add("compression", a.Compression)
		if a.TimestampBase != 0 {
			add("timestamp-base", strconv.FormatInt(a.TimestampBase, 10))
		}
		if a.Idempotent {
			out = append(out, "--idempotent")
		}
		if a.DelayMs > 0 {
			add("delay-ms", strconv.Itoa(a.DelayMs))
		}
	case "produce-txn":
		add("partitions", strconv.Itoa(int(a.Partitions)))
		add("count", strconv.Itoa(a.Count))
		add("prefix", a.Prefix)
		add("transactional-id", a.TxnID)
		add("plan", a.plan())
	case "consume":
		add("partition", strconv.Itoa(int(a.Partition)))
		add("from", a.From)
		add("count", strconv.Itoa(a.Count))
		if a.ReadCommitted {
			out = append(out, "--read-committed")
		}
	case "group-consume":
		add("group", a.Group)
		add("count", strconv.Itoa(a.Count))
	case "groups":
		add("group", a.Group)
	}
	return out
}

// plan renders a.Commit as produce-txn's --plan: commit,abort,...
func (a opArgs) plan() string {
	ends := make([]string, len(a.Commit))
	for i, c := range a.Commit {
		ends[i] = txnEndName(c)
	}
	return strings.Join(ends, ",")
}

func txnEndName(commit bool) string {
	if commit {
		return "commit"
	}
	return "abort"
}

// txnPrefix is the record prefix of transaction j of a produce-txn with
// prefix.
func txnPrefix(prefix string, j int) string {
	return fmt.Sprintf("%s-%d", prefix, j)
}

// driver runs one operation with one client; line receives every JSON line
// the operation printed, in order, as it is printed.
type driver interface {
	run(ctx context.Context, t testing.TB, op string, a opArgs, line func(json.RawMessage)) error
}

// procDriver runs a driver program: argv followed by the operation.
type procDriver struct {
	name string
	argv []string
}

func (d procDriver) run(ctx context.Context, t testing.TB, op string, a opArgs, line func(json.RawMessage)) error {
	t.Helper()
	args := append(append([]string{}, d.argv[1:]...), a.argv(op)...)
	cmd := exec.CommandContext(ctx, d.argv[0], args...)
	cmd.WaitDelay = 5 * time.Second
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", d.name, err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var bad []string
	for sc.Scan() {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if !json.Valid(b) {
			bad = append(bad, string(b))
			continue
		}
		line(json.RawMessage(append([]byte(nil), b...)))
	}
	err = cmd.Wait()
	if s := stderr.String(); s != "" {
		t.Logf("%s %s stderr:\n%s", d.name, op, tail(s, 8<<10))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s %s printed lines that are not JSON: %q", d.name, op, bad[:min(len(bad), 5)])
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 3 {
		return fmt.Errorf("%s %s: %w: %s", d.name, op, errUnsupported, strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", d.name, op, err)
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "[...]" + s[len(s)-n:]
	}
	return s
}

// Output lines of the operations.
type (
	recordLine struct {
		P  int32       `json:"p"`
		O  int64       `json:"o"`
		K  *string     `json:"k"`
		V  *string     `json:"v"`
		H  [][2]string `json:"h"`
		Ts int64       `json:"ts"`
	}
	ackLine struct {
		I int   `json:"i"`
		O int64 `json:"o"`
	}
	// txnEndLine says that transaction Txn of a produce-txn ended.
	txnEndLine struct {
		Txn int    `json:"txn"`
		End string `json:"end"` // commit or abort
	}
	metadataLine struct {
		Brokers []struct {
			ID   int32  `json:"id"`
			Host string `json:"host"`
			Port int32  `json:"port"`
		} `json:"brokers"`
		Topic      string `json:"topic"`
		Partitions []struct {
			P      int32 `json:"p"`
			Leader int32 `json:"leader"`
		} `json:"partitions"`
	}
	groupsLine struct {
		Listed       []string `json:"listed"`
		Group        string   `json:"group"`
		State        string   `json:"state"`
		ProtocolType string   `json:"protocol_type"`
		Members      []struct {
			MemberID   string `json:"member_id"`
			ClientID   string `json:"client_id"`
			ClientHost string `json:"client_host"`
		} `json:"members"`
	}
)

// runOp runs op and decodes every line into a T.
func runOp[T any](ctx context.Context, t testing.TB, d driver, op string, a opArgs) []T {
	t.Helper()
	var out []T
	var decodeErr error
	err := d.run(ctx, t, op, a, func(raw json.RawMessage) {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil && decodeErr == nil {
			decodeErr = fmt.Errorf("decoding %s: %w", raw, err)
		}
		out = append(out, v)
	})
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	if decodeErr != nil {
		t.Fatalf("%s: %v", op, decodeErr)
	}
	return out
}

// shaped is record i of a produce with prefix (DRIVERS.md).
func shaped(prefix string, i int, tsBase int64) recordLine {
	k, v := fmt.Sprintf("%s-key-%d", prefix, i), fmt.Sprintf("%s-value-%d", prefix, i)
	r := recordLine{K: &k, V: &v, H: [][2]string{{"h1", strconv.Itoa(i)}, {"h2", prefix}}}
	if tsBase != 0 {
		r.Ts = tsBase + int64(i)
	}
	return r
}

// recordCheck says which fields of shaped records a check compares.
type recordCheck struct {
	prefix      string
	count       int   // how many records there must be
	first       int   // index of the first expected record
	firstOffset int64 // its offset
	tsBase      int64 // 0: timestamps are not compared
	noHeaders   bool
}

// checkShaped checks that got are the shaped records first, first+1, ...
// at consecutive offsets on partition 0.
func checkShaped(t testing.TB, got []recordLine, c recordCheck) {
	t.Helper()
	if len(got) != c.count {
		t.Errorf("%d records, want %d", len(got), c.count)
	}
	bad := 0
	for j, g := range got {
		w := shaped(c.prefix, c.first+j, c.tsBase)
		var d []string
		if g.P != 0 || g.O != c.firstOffset+int64(j) {
			d = append(d, fmt.Sprintf("at partition %d offset %d, want 0/%d", g.P, g.O, c.firstOffset+int64(j)))
		}
		if g.K == nil || *g.K != *w.K {
			d = append(d, fmt.Sprintf("key %s, want %q", strOrNull(g.K), *w.K))
		}
		if g.V == nil || *g.V != *w.V {
			d = append(d, fmt.Sprintf("value %s, want %q", strOrNull(g.V), *w.V))
		}
		if !c.noHeaders && fmt.Sprint(g.H) != fmt.Sprint(w.H) {
			d = append(d, fmt.Sprintf("headers %q, want %q", g.H, w.H))
		}
		if c.tsBase != 0 && g.Ts != w.Ts {
			d = append(d, fmt.Sprintf("timestamp %d, want %d", g.Ts, w.Ts))
		}
		if len(d) > 0 {
			t.Errorf("record %d: %s", j, strings.Join(d, "; "))
			if bad++; bad >= 5 {
				t.FailNow()
			}
		}
	}
}

func strOrNull(s *string) string {
	if s == nil {
		return "null"
	}
	return strconv.Quote(*s)
}

// cellTB runs a known gap's cell: failures are recorded instead of
// failing the test.
type cellTB struct {
	testing.TB
	mu     sync.Mutex
	failed []string
}

func (c *cellTB) record(msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failed = append(c.failed, msg)
}

func (c *cellTB) Error(args ...any)                 { c.record(fmt.Sprint(args...)) }
func (c *cellTB) Errorf(format string, args ...any) { c.record(fmt.Sprintf(format, args...)) }
func (c *cellTB) Fail()                             { c.record("failed") }
func (c *cellTB) FailNow()                          { c.record("failed"); runtime.Goexit() }
func (c *cellTB) Fatal(args ...any)                 { c.Error(args...); runtime.Goexit() }
func (c *cellTB) Fatalf(format string, args ...any) { c.Errorf(format, args...); runtime.Goexit() }
func (c *cellTB) Failed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.failed) > 0
}

// matrixDrivers returns the driver of every client.
func matrixDrivers(t *testing.T) map[string]driver {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed (%v); install the Debian package nodejs", err)
	}
	if _, err := os.Stat("js/node_modules/kafkajs"); err != nil {
		t.Fatalf("kafkajs is not installed (%v); run npm ci --prefix compat-tests/js", err)
	}
	for _, module := range []string{"kafka", "confluent_kafka"} {
		if out, err := exec.Command(systemPython, "-c", "import "+module).CombinedOutput(); err != nil {
			t.Fatalf("%s cannot import %s (%v: %s); run ./test.sh, which installs the Debian packages", systemPython, module, err, out)
		}
	}
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is not installed (%v); install the Debian package kcat", err)
	}
	return map[string]driver{
		"franz-go":     franzDriver{},
		"sarama":       saramaDriver{},
		"kafka-go":     kafkaGoDriver{},
		"kcat":         kcatDriver{bin: kcat},
		"kafka-python": procDriver{"kafka-python", []string{systemPython, "python/driver.py", "kafka-python"}},
		"confluent":    procDriver{"confluent-kafka", []string{systemPython, "python/driver.py", "confluent"}},
		"kafkajs":      procDriver{"kafkajs", []string{node, "js/driver.js"}},
	}
}

// matrixEnv is what the cells share: one broker with fast group settings
// and, for the cluster row, a three-broker cluster.
type matrixEnv struct {
	b       *brokerProc
	cluster *cluster
	seq     atomic.Int64
}

// name returns a topic or group name unique in this run.
func (e *matrixEnv) name(client, feature string) string {
	return fmt.Sprintf("m-%s-%s-%d", client, feature, e.seq.Add(1))
}

type cellFunc func(ctx context.Context, t testing.TB, e *matrixEnv, client string, d driver)

func TestMatrix(t *testing.T) {
	drivers := matrixDrivers(t)
	e := &matrixEnv{b: startGroupBroker(t)}
	results := matrix.Results{}
	var mu sync.Mutex
	runCell := func(t *testing.T, name string, c matrix.Client, f matrix.Feature, fn cellFunc) {
		cell := matrix.Cell{Client: c.ID, Feature: f.ID}
		if _, ok := matrix.Unsupported[cell]; ok {
			mu.Lock()
			results[cell] = matrix.NotSupported
			mu.Unlock()
			return
		}
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t, 4*time.Minute)
			status := matrix.Pass
			if reason, gap := matrix.KnownGaps[cell]; gap {
				ct := &cellTB{TB: t}
				done := make(chan struct{})
				go func() {
					defer close(done)
					fn(ctx, ct, e, c.ID, drivers[c.ID])
				}()
				<-done
				if ct.Failed() {
					t.Logf("known gap (%s) still fails: %v", reason, ct.failed)
					status = matrix.KnownGap
				} else {
					t.Errorf("known gap %v passes now; remove it from matrix.KnownGaps", cell)
				}
			} else {
				defer func() {
					if t.Failed() {
						status = matrix.Fail
					}
					mu.Lock()
					results[cell] = status
					mu.Unlock()
				}()
				fn(ctx, t, e, c.ID, drivers[c.ID])
				return
			}
			mu.Lock()
			results[cell] = status
			mu.Unlock()
		})
	}
	clusterCell := matrix.Features[slices.IndexFunc(matrix.Features, func(f matrix.Feature) bool { return f.ID == "leader-kill" })]
	for _, c := range matrix.Clients {
		t.Run(c.ID, func(t *testing.T) {
			for _, f := range matrix.Features {
				if f == clusterCell {
					continue
				}
				runCell(t, f.ID, c, f, matrixCells[f.ID])
			}
		})
	}
	// The cluster row last, on one cluster started for it.
	e.cluster = startCluster(t)
	t.Run(clusterCell.ID, func(t *testing.T) {
		for _, c := range matrix.Clients {
			runCell(t, c.ID, c, clusterCell, cellLeaderKill)
		}
	})

	if !results.Complete() {
		t.Logf("not every cell ran; the README's matrix is not compared")
		return
	}
	table := matrix.Render(results)
	if *matrixOut != "" {
		if err := os.WriteFile(*matrixOut, []byte(table), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	have, err := matrix.Section(readme)
	if err != nil {
		t.Fatal(err)
	}
	if have != table {
		t.Errorf("the README's compatibility matrix is not this run's; run go run ./cmd/compat-matrix. This run:\n%s", table)
	}
}
