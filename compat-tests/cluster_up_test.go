package compattests

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestClusterUp runs `pubg1 cluster up --brokers 4`: it must print each
// broker's ID, address and PID, serve as one cluster of four (a topic of
// replication factor 3 takes writes and reads), keep the brokers' data
// under --data, and stop every broker on SIGINT.
func TestClusterUp(t *testing.T) {
	ctx := testContext(t, 2*time.Minute)
	base := freePortRun(t, 4)
	data := filepath.Join(t.TempDir(), "cluster-data")
	cmd := exec.CommandContext(ctx, brokerBin, "cluster", "up", "--brokers", "4", "--base-port", strconv.Itoa(base), "--data", data)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	line := regexp.MustCompile(`^broker (\d+)\s+(\S+)\s+pid (\d+)$`)
	pids := map[int]int{}
	var addrs []string
	sc := bufio.NewScanner(out)
	for len(pids) < 4 && sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		id, _ := strconv.Atoi(m[1])
		pid, _ := strconv.Atoi(m[3])
		if want := fmt.Sprintf("127.0.0.1:%d", base+id-1); m[2] != want {
			t.Errorf("broker %d listed at %s, want %s", id, m[2], want)
		}
		pids[id] = pid
		addrs = append(addrs, m[2])
	}
	if len(pids) != 4 {
		t.Fatalf("cluster up listed %d brokers (%v); its log:\n%s", len(pids), sc.Err(), stderr.String())
	}
	go func() { // the rest of its output, so that it never blocks on a full pipe
		for sc.Scan() {
		}
	}()

	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	wctx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	var brokers int
	ktest.Until(wctx, pollEvery, func() bool {
		m, err := adm.Metadata(wctx)
		brokers = len(m.Brokers)
		return err == nil && brokers == 4
	})
	if brokers != 4 {
		t.Fatalf("Metadata lists %d brokers, want 4", brokers)
	}
	const topic = "cluster-up"
	if _, err := adm.CreateTopic(ctx, 4, 3, nil, topic); err != nil {
		t.Fatalf("creating %s: %v", topic, err)
	}
	recs := make([]*kgo.Record, 100)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Partition: int32(i % 4), Value: []byte(fmt.Sprintf("v%03d", i))}
	}
	pctx, pcancel := context.WithTimeout(ctx, deliveryTimeout)
	defer pcancel()
	if err := cl.ProduceSync(pctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing to the cluster: %v", err)
	}
	for id := 1; id <= 4; id++ {
		if _, err := os.Stat(filepath.Join(data, strconv.Itoa(id))); err != nil {
			t.Errorf("broker %d's data directory: %v", id, err)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(time.Minute):
		t.Fatal("cluster up did not exit within a minute of SIGINT")
	}
	for id, pid := range pids {
		// A stopped child is reaped by cluster up; signal 0 then fails.
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("broker %d (pid %d) still runs after cluster up exited", id, pid)
		}
	}
}

// freePortRun finds n consecutive free ports on 127.0.0.1 and returns the
// first.
func freePortRun(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(30000)
		var held []net.Listener
		for p := base; p < base+n; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				break
			}
			held = append(held, ln)
		}
		for _, ln := range held {
			ln.Close()
		}
		if len(held) == n {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports found", n)
	return 0
}

// clusterUpRun is a `pubg1 cluster up` process started by a test.
type clusterUpRun struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	exited         chan struct{} // closed once it has exited and err is set
	err            error
}

// startClusterUp starts `pubg1 cluster up` with args; the test's cleanup
// kills it if it still runs.
func startClusterUp(t *testing.T, args ...string) *clusterUpRun {
	t.Helper()
	r := &clusterUpRun{exited: make(chan struct{})}
	r.cmd = exec.Command(brokerBin, append([]string{"cluster", "up"}, args...)...)
	r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		if !r.hasExited() {
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
		if t.Failed() {
			t.Logf("cluster up printed:\n%s\nand on stderr:\n%s", r.stdout.String(), r.stderr.String())
		}
	})
	return r
}

func (r *clusterUpRun) hasExited() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
}

// await waits until cluster up has printed a line that re matches and
// returns its submatches.
func (r *clusterUpRun) await(ctx context.Context, t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	var m []string
	ktest.Until(ctx, pollEvery, func() bool {
		for _, line := range strings.Split(r.stdout.String(), "\n") {
			if m = re.FindStringSubmatch(line); m != nil {
				return true
			}
		}
		return r.hasExited()
	})
	if m == nil {
		t.Fatalf("cluster up did not print a line matching %q (exited: %v)", re, r.hasExited())
	}
	return m
}

// upStatus is cluster status -o json.
type upStatus struct {
	Data      string `json:"data"`
	Bootstrap string `json:"bootstrap"`
	Brokers   []struct {
		ID      int    `json:"id"`
		Address string `json:"address"`
		DataDir string `json:"data_dir"`
		PID     int    `json:"pid"`
		State   string `json:"state"`
		Exit    string `json:"exit"`
	} `json:"brokers"`
}

func clusterStatusOf(t *testing.T, data string) upStatus {
	t.Helper()
	r := runCLI(t, "cluster", "status", "--data", data, "-o", "json")
	if r.code != 0 {
		t.Fatalf("cluster status: exit code %d: %s", r.code, r.stderr)
	}
	var st upStatus
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("cluster status -o json: %v\n%s", err, r.stdout)
	}
	return st
}

// checkBroker checks one broker's state in st, and that it has a PID
// exactly when it runs.
func checkBroker(t *testing.T, st upStatus, id int, state, exit string) {
	t.Helper()
	b := st.Brokers[id-1]
	if b.ID != id || b.State != state || b.Exit != exit || (b.PID != 0) != (state == "running") {
		t.Errorf("cluster status: broker %d is %+v, want state %q exit %q", id, b, state, exit)
	}
}

// controlOK runs a control command against the cluster under data and
// returns its output line.
func controlOK(t *testing.T, data string, args ...string) string {
	t.Helper()
	r := runCLI(t, append(append([]string{"cluster"}, args...), "--data", data)...)
	if r.code != 0 {
		t.Fatalf("cluster %s: exit code %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return strings.TrimSpace(r.stdout)
}

// controlFails runs a control command that must fail and returns its
// error line.
func controlFails(t *testing.T, data string, args ...string) string {
	t.Helper()
	return runCLI(t, append(append([]string{"cluster"}, args...), "--data", data)...).errorLine(t, 1, "cluster "+strings.Join(args, " "))
}

// TestClusterUpFailover drives a failover by hand as a user would: it
// starts `cluster up --brokers 3`, kills broker 2 with `cluster kill`
// (cluster up goes on, the other brokers serve writes and reads and answer
// cluster info and topic describe), brings it back with `cluster start`,
// stops broker 3 with `cluster stop` and ends it all with `cluster down`.
// A second cluster up on the same data directory is refused meanwhile.
func TestClusterUpFailover(t *testing.T) {
	ctx := testContext(t, 85*time.Second)
	base := freePortRun(t, 3)
	data := filepath.Join(t.TempDir(), "cluster-data")
	up := startClusterUp(t, "--brokers", "3", "--base-port", strconv.Itoa(base), "--data", data)
	m := up.await(ctx, t, regexp.MustCompile(`^cluster of 3 brokers serving; bootstrap with (\S+);`))
	addrs := strings.Split(m[1], ",")
	if want := fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", base, base+1, base+2); m[1] != want {
		t.Fatalf("bootstrap %s, want %s", m[1], want)
	}
	// Serving means every broker already answers Metadata with all three.
	for i, addr := range addrs {
		md, err := metadataWithin(addr, probeTimeout)
		if err != nil || len(md.Brokers) != 3 || md.ControllerID < 0 {
			t.Fatalf("broker %d after the announcement: %v, metadata %+v", i+1, err, md)
		}
	}

	st := clusterStatusOf(t, data)
	if st.Data != data || st.Bootstrap != m[1] || len(st.Brokers) != 3 {
		t.Fatalf("cluster status: %+v", st)
	}
	pids := map[int]int{}
	for id := 1; id <= 3; id++ {
		checkBroker(t, st, id, "running", "")
		if b := st.Brokers[id-1]; b.Address != addrs[id-1] || b.DataDir != filepath.Join(data, strconv.Itoa(id)) {
			t.Errorf("cluster status: broker %d is %+v", id, b)
		}
		pids[id] = st.Brokers[id-1].PID
	}

	second := runCLI(t, "cluster", "up", "--brokers", "3", "--base-port", strconv.Itoa(base), "--data", data)
	if line := second.errorLine(t, 1, "a second cluster up"); !strings.Contains(line, "another cluster up is running under "+data) {
		t.Errorf("a second cluster up on the same data: %s", line)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(deliveryTimeout))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const topic = "cluster-up-failover"
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 3, nil, topic); err != nil {
		t.Fatalf("creating %s: %v", topic, err)
	}
	produce := func(cl *kgo.Client, from, n int) {
		t.Helper()
		recs := make([]*kgo.Record, n)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: topic, Partition: int32(i % 3), Value: []byte(fmt.Sprintf("v%03d", from+i))}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("producing records %d-%d: %v", from, from+n-1, err)
		}
	}
	produce(cl, 0, 30)

	if out := controlOK(t, data, "kill", "2"); out != "broker 2 killed (signal: killed)" {
		t.Errorf("cluster kill 2 printed %q", out)
	}
	up.await(ctx, t, regexp.MustCompile(`^broker 2 exited \(signal: killed\)$`))
	st = clusterStatusOf(t, data)
	checkBroker(t, st, 1, "running", "")
	checkBroker(t, st, 2, "exited", "signal: killed")
	checkBroker(t, st, 3, "running", "")
	if err := syscall.Kill(pids[2], 0); err == nil {
		t.Errorf("broker 2 (pid %d) still runs after cluster kill", pids[2])
	}
	if up.hasExited() {
		t.Fatalf("cluster up exited when broker 2 was killed: %v", up.err)
	}
	if line := controlFails(t, data, "kill", "2"); !strings.Contains(line, "broker 2 is not running") {
		t.Errorf("cluster kill of a killed broker: %s", line)
	}

	// The survivors take writes and serve reads of everything written.
	survivors, err := kgo.NewClient(kgo.SeedBrokers(addrs[0], addrs[2]), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(deliveryTimeout), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer survivors.Close()
	produce(survivors, 30, 30)
	seen := map[string]bool{}
	for len(seen) < 60 && ctx.Err() == nil {
		survivors.PollFetches(ctx).EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
	if len(seen) != 60 {
		t.Fatalf("read %d of 60 records back from brokers 1 and 3", len(seen))
	}
	info := runCLI(t, "cluster", "info", "--brokers", addrs[0]+","+addrs[2], "-o", "json")
	if info.code != 0 || !strings.Contains(info.stdout, `"api_keys"`) {
		t.Errorf("cluster info with broker 2 down: exit code %d\n%s%s", info.code, info.stdout, info.stderr)
	}
	if r := runCLI(t, "topic", "describe", topic, "--brokers", addrs[2]); r.code != 0 {
		t.Errorf("topic describe with broker 2 down: exit code %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	out := controlOK(t, data, "start", "2")
	if m := regexp.MustCompile(`^broker 2 serving on (\S+) \(pid (\d+)\)$`).FindStringSubmatch(out); m == nil || m[1] != addrs[1] || m[2] == strconv.Itoa(pids[2]) {
		t.Errorf("cluster start 2 printed %q", out)
	}
	st = clusterStatusOf(t, data)
	checkBroker(t, st, 2, "running", "")
	if md, err := metadataWithin(addrs[1], probeTimeout); err != nil || md.ControllerID < 0 {
		t.Errorf("broker 2 after cluster start: %v", err)
	}
	if line := controlFails(t, data, "start", "2"); !strings.Contains(line, "broker 2 is already running") {
		t.Errorf("cluster start of a running broker: %s", line)
	}

	if out := controlOK(t, data, "stop", "3"); out != "broker 3 stopped (exit status 0)" {
		t.Errorf("cluster stop 3 printed %q", out)
	}
	st = clusterStatusOf(t, data)
	checkBroker(t, st, 3, "stopped", "exit status 0")
	if line := controlFails(t, data, "stop", "9"); !strings.Contains(line, "no broker 9") {
		t.Errorf("cluster stop 9: %s", line)
	}

	if out := controlOK(t, data, "down"); out != "stopped the cluster of 3 brokers" {
		t.Errorf("cluster down printed %q", out)
	}
	select {
	case <-up.exited:
		if up.err != nil {
			t.Errorf("cluster up after cluster down: %v", up.err)
		}
	case <-ctx.Done():
		t.Fatal("cluster up still runs after cluster down")
	}
	if _, err := os.Stat(filepath.Join(data, "control.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the control socket after cluster down: %v", err)
	}
	for _, id := range []int{1, 2} {
		if pid := clusterStatusPID(up.stdout.String(), id); pid != 0 && syscall.Kill(pid, 0) == nil {
			t.Errorf("broker %d (pid %d) still runs after cluster down", id, pid)
		}
	}
	if line := controlFails(t, data, "status"); line != "pubg1: no cluster is running under "+data {
		t.Errorf("cluster status after cluster down: %s", line)
	}
}

// clusterStatusPID is the PID cluster up last printed for broker id.
func clusterStatusPID(out string, id int) int {
	pid := 0
	re := regexp.MustCompile(fmt.Sprintf(`^broker %d\s+\S+\s+pid (\d+)$`, id))
	for _, line := range strings.Split(out, "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			pid, _ = strconv.Atoi(m[1])
		}
	}
	return pid
}

// TestClusterUpStartFailure holds broker 2's port: cluster up must name
// broker 2 and why it failed, stop the others and exit 1. It also starts
// over a control socket that an earlier cluster up left behind.
func TestClusterUpStartFailure(t *testing.T) {
	base := freePortRun(t, 3)
	held, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+1))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	data := filepath.Join(t.TempDir(), "cluster-data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(data, "control.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if line := controlFails(t, data, "status"); line != "pubg1: no cluster is running under "+data {
		t.Errorf("cluster status over a stale socket: %s", line)
	}

	r := runCLI(t, "cluster", "up", "--brokers", "3", "--base-port", strconv.Itoa(base), "--data", data)
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	want := fmt.Sprintf("pubg1: broker 2 (127.0.0.1:%d) exited during start-up (exit status 1): --listen 127.0.0.1:%d: address already in use", base+1, base+1)
	if r.code != 1 || last != want {
		t.Errorf("cluster up with broker 2's port taken: exit code %d, last line\n%s\nwant\n%s\nstderr:\n%s", r.code, last, want, r.stderr)
	}
	for _, id := range []int{1, 3} {
		if !strings.Contains(r.stdout, fmt.Sprintf("broker %d stopped", id)) {
			t.Errorf("cluster up did not stop broker %d:\n%s", id, r.stdout)
		}
		if pid := clusterStatusPID(r.stdout, id); pid == 0 || syscall.Kill(pid, 0) == nil {
			t.Errorf("broker %d (pid %d) after cluster up failed", id, pid)
		}
	}
	if strings.Contains(r.stdout, "serving") {
		t.Errorf("cluster up announced a cluster that failed to start:\n%s", r.stdout)
	}
	if _, err := os.Stat(filepath.Join(data, "control.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the control socket after a failed start: %v", err)
	}
}
