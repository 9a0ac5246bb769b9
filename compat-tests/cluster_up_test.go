package compattests

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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
