package storage

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestBadgerReopen(t *testing.T) {
	dir := t.TempDir()
	log := testLog(1, 0)
	want := []Batch{batch(log, 0, 10, 100), batch(log, 10, 10, 20000)}

	s, err := OpenBadger(testBadgerOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	mustSubmit(t, s, &Write{Batches: want, KVs: []KV{{Key: []byte("k"), Value: []byte("v")}}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestBadger(t, dir)
	checkBatches(t, scanAll(t, s, log, 0), want)
	if v, err := s.Get([]byte("k")); err != nil || string(v) != "v" {
		t.Fatalf("Get after reopen = %q, %v", v, err)
	}
}

func TestBadgerOptionsValidate(t *testing.T) {
	for _, o := range []BadgerOptions{
		{},
		{Dir: "x", MemTableSize: -1},
		{Dir: "x", ValueLogFileSize: 1000},
	} {
		if _, err := OpenBadger(o); !errors.Is(err, ErrInvalid) {
			t.Errorf("OpenBadger(%+v) err = %v, want ErrInvalid", o, err)
		}
	}
	if err := DefaultBadgerOptions("x", zerolog.Nop()).Validate(); err != nil {
		t.Errorf("default options: %v", err)
	}
}

// TestBadgerGC runs the value-log GC loop after retention deleted most of
// the data, and checks it neither breaks reads nor outlives Close.
func TestBadgerGC(t *testing.T) {
	o := testBadgerOptions(t.TempDir())
	o.ValueLogFileSize = 1 << 20
	o.GCInterval = 5 * time.Millisecond
	s, err := OpenBadger(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	log := testLog(1, 0)
	var bs []Batch
	for i := range int64(200) {
		b := batch(log, i, 1, 30000)
		bs = append(bs, b)
		mustSubmit(t, s, &Write{Batches: []Batch{b}})
	}
	if err := s.DeleteBatches(log, 190); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let a few GC passes run
	checkBatches(t, scanAll(t, s, log, 0), bs[190:])
}

const crashDirEnv = "PUBG1_STORAGE_CRASH_DIR"

// crashData is the batch and KV value of write n of the crash test.
func crashData(n int64) Batch {
	size := 200 // inline in the LSM tree
	if n%2 == 0 {
		size = 5000 // in the value log
	}
	return batch(testLog(1, 0), n, 1, size)
}

// TestBadgerCrash SIGKILLs a process that is writing and checks that every
// write it acknowledged survives.
func TestBadgerCrash(t *testing.T) {
	dir := t.TempDir()
	// The child is this test binary; TestMain sees the variable and runs
	// crashChild instead of the tests.
	cmd := exec.Command(os.Args[0], "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	var acked []int64
	sc := bufio.NewScanner(out)
	killed := false
	deadline := time.Now().Add(60 * time.Second)
	for sc.Scan() {
		n, ok := strings.CutPrefix(sc.Text(), "ack ")
		if !ok {
			continue
		}
		off, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			t.Fatalf("child printed %q", sc.Text())
		}
		acked = append(acked, off)
		// Kill mid-stream, after enough acks to have crossed memtable and
		// value-log boundaries; lines already in the pipe still count.
		if !killed && (len(acked) >= 5000 || time.Now().After(deadline)) {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child exited before it was killed (%d acks): %v", len(acked), err)
	}
	if len(acked) == 0 {
		t.Fatal("child acknowledged nothing")
	}

	s := openTestBadger(t, dir)
	stored := make(map[int64][]byte)
	if err := s.Scan(testLog(1, 0), 0, func(m BatchMeta, data []byte) bool {
		stored[m.BaseOffset] = bytes.Clone(data)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for _, off := range acked {
		if !bytes.Equal(stored[off], crashData(off).Data) {
			t.Fatalf("acknowledged write %d lost or damaged (%d acked, %d stored)", off, len(acked), len(stored))
		}
		if v, err := s.Get(fmt.Appendf(nil, "crash/%d", off)); err != nil || string(v) != strconv.FormatInt(off, 10) {
			t.Fatalf("acknowledged KV %d: %q, %v", off, v, err)
		}
	}
	t.Logf("%d acknowledged writes survived SIGKILL (%d stored)", len(acked), len(stored))
}

// crashChild is the process TestBadgerCrash kills. It writes with many
// Writes in flight so that rounds hold several, and prints each
// acknowledged one.
func crashChild(dir string) {
	// Tiny memtables and value-log files, so that the kill lands after
	// memtable and value-log rotations and rounds split across transactions.
	o := testBadgerOptions(dir)
	o.MemTableSize, o.ValueLogFileSize = 1<<20, 1<<20
	s, err := OpenBadger(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "open: %v\n", err)
		os.Exit(2)
	}
	defer s.Close()

	inflight := make(chan struct{}, 64)
	stop := time.After(2 * time.Minute) // the parent kills us well before
	for n := int64(0); ; n++ {
		select {
		case inflight <- struct{}{}:
		case <-stop:
			fmt.Fprintln(os.Stderr, "not killed")
			os.Exit(2)
		}
		s.Submit(&Write{
			Batches: []Batch{crashData(n)},
			KVs:     []KV{{Key: fmt.Appendf(nil, "crash/%d", n), Value: strconv.AppendInt(nil, n, 10)}},
			Done: func(err error) {
				if err != nil {
					fmt.Fprintf(os.Stderr, "write %d: %v\n", n, err)
					os.Exit(2)
				}
				fmt.Fprintf(os.Stdout, "ack %d\n", n) // Done runs on one goroutine
				<-inflight
			},
		})
	}
}
