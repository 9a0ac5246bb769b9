package compattests

// kcat's driver of the compatibility matrix (DRIVERS.md): the Debian kcat
// binary (librdkafka), one process per operation.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kcatDriver runs the matrix operations with the kcat binary at bin: -L -J
// for metadata, -P for produce, -C -J for consume and -G -J for
// group-consume. kcat has no admin operations.
type kcatDriver struct{ bin string }

const (
	// kcatKeyDelim separates a record's key from its value in kcat's
	// input (-K).
	kcatKeyDelim = "\t"
	// kcatReadSize is how much kcat reads of its input at a time: it
	// blocks until it has that many bytes (or the input ends) before it
	// looks for the next record's delimiter.
	kcatReadSize = 128
)

// kcatRecordDelim ends a record in kcat's input (-D). It is kcatReadSize
// long, so that every record is longer than one read of kcat's and kcat's
// reads keep up with a paced input (see kcatInput).
var kcatRecordDelim = "\n" + strings.Repeat("~", kcatReadSize-1)

// kcatNoise are the beginnings of what kcat says on stderr, in every run
// of the driver's, that is left out of the log.
var kcatNoise = []string{
	"% Reading configuration from file /dev/null",
	"% Setting producer input buffer max size",
	"% Enable message offset reporting",
}

// kcatDelivered is the delivery report kcat prints at verbosity 3 (-v -v).
var kcatDelivered = regexp.MustCompile(`^% Message delivered to partition (-?\d+) \(offset (-?\d+)\)`)

func (d kcatDriver) run(ctx context.Context, t testing.TB, op string, a opArgs, line func(json.RawMessage)) error {
	ctx, cancel := context.WithTimeout(ctx, a.Timeout)
	defer cancel()
	line = lockedLine(line)
	switch op {
	case "metadata":
		return d.metadata(ctx, t, a, line)
	case "create", "delete", "groups":
		return fmt.Errorf("kcat %s: %w: kcat has no admin operations", op, errUnsupported)
	case "produce":
		return d.produce(ctx, t, a, line)
	case "produce-txn":
		return d.produceTxn(ctx, t, a, line)
	case "consume", "group-consume":
		return d.consume(ctx, t, op, a, line)
	}
	return fmt.Errorf("unknown operation %q", op)
}

// exec runs kcat with args. input, when not nil, writes kcat's stdin (and
// may signal the kcat process); every line kcat prints on stdout goes to stdout, and every line on
// stderr to stderr, which returns whether it used it: the others are
// logged.
func (d kcatDriver) exec(ctx context.Context, t testing.TB, input func(io.Writer, *os.Process) error, stdout func([]byte) error, stderr func(string) bool, args ...string) error {
	t.Helper()
	cmd := exec.CommandContext(ctx, d.bin, args...)
	cmd.WaitDelay = 5 * time.Second
	// No configuration file of the user's (~/.config/kcat.conf).
	cmd.Env = append(os.Environ(), "KCAT_CONFIG=/dev/null")
	var stdin io.WriteCloser
	var err error
	if input != nil {
		if stdin, err = cmd.StdinPipe(); err != nil {
			return err
		}
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting kcat: %w", err)
	}
	var logged syncBuffer
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		sc := bufio.NewScanner(errPipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l := sc.Text()
			if stderr != nil && stderr(l) || slices.ContainsFunc(kcatNoise, func(p string) bool { return strings.HasPrefix(l, p) }) {
				continue
			}
			fmt.Fprintln(&logged, l)
		}
	}()
	inputDone := make(chan error, 1)
	if input != nil {
		go func() {
			err := input(stdin, cmd.Process)
			inputDone <- errors.Join(err, stdin.Close())
		}()
	}
	var outErr error
	sc := bufio.NewScanner(outPipe)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if b := sc.Bytes(); len(strings.TrimSpace(string(b))) > 0 && outErr == nil {
			outErr = stdout(b)
		}
	}
	<-stderrDone
	err = cmd.Wait()
	if s := logged.String(); s != "" {
		t.Logf("%s stderr:\n%s", kcatCommand(args), tail(s, 8<<10))
	}
	var inErr error
	if input != nil {
		inErr = <-inputDone
	}
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w (context: %v)", kcatCommand(args), err, ctx.Err())
	case outErr != nil:
		return outErr
	case inErr != nil:
		return fmt.Errorf("writing kcat's input: %w", inErr)
	}
	return nil
}

// kcatCommand renders a kcat command line for messages.
func kcatCommand(args []string) string {
	out := []string{"kcat"}
	for _, a := range args {
		switch {
		case a == kcatRecordDelim:
			a = fmt.Sprintf(`"\n"+%d*"~"`, len(kcatRecordDelim)-1)
		case strings.ContainsFunc(a, func(r rune) bool { return !strconv.IsPrint(r) }):
			a = strconv.Quote(a)
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
}

// metadata prints what kcat -L -J lists for the topic.
func (d kcatDriver) metadata(ctx context.Context, t testing.TB, a opArgs, line func(json.RawMessage)) error {
	var md struct {
		Brokers []struct {
			ID   int32  `json:"id"`
			Name string `json:"name"` // host:port
		} `json:"brokers"`
		Topics []struct {
			Topic      string `json:"topic"`
			Error      string `json:"error"`
			Partitions []struct {
				Partition int32  `json:"partition"`
				Leader    int32  `json:"leader"`
				Error     string `json:"error"`
			} `json:"partitions"`
		} `json:"topics"`
	}
	var raw []byte
	if err := d.exec(ctx, t, nil, func(b []byte) error { raw = append(raw, b...); return nil }, nil,
		"-L", "-J", "-b", a.Bootstrap, "-t", a.Topic); err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &md); err != nil {
		return fmt.Errorf("kcat -L -J printed %q: %w", raw, err)
	}
	out := metadataLine{Topic: a.Topic}
	for _, b := range md.Brokers {
		i := strings.LastIndexByte(b.Name, ':')
		port, err := strconv.ParseInt(b.Name[i+1:], 10, 32)
		if i < 0 || err != nil {
			return fmt.Errorf("kcat lists broker %d at %q, not host:port", b.ID, b.Name)
		}
		out.addBroker(b.ID, b.Name[:i], int32(port))
	}
	found := false
	for _, mt := range md.Topics {
		if mt.Topic != a.Topic {
			continue
		}
		if mt.Error != "" {
			return fmt.Errorf("kcat lists topic %s with error %s", a.Topic, mt.Error)
		}
		found = true
		for _, p := range mt.Partitions {
			out.addPartition(p.Partition, p.Leader)
		}
	}
	if !found {
		return fmt.Errorf("kcat -L does not list topic %s", a.Topic)
	}
	out.sortPartitions()
	return emit(line, out)
}

// kcatInput is the input of a kcat -P that produces records from..to-1,
// and the offset in it at which each record's delimiter ends.
//
// kcat reads its input kcatReadSize bytes at a time, each read blocking
// until that many bytes are there (or the input ends), and it reads at
// least once before it looks for the next delimiter. So kcat hands a
// record to librdkafka once the input reaches the multiple of
// kcatReadSize at or past the record's delimiter: a paced producer writes
// that much at once (upTo), the beginning of the next record included,
// and each record goes out when it is written instead of when the next
// one is.
type kcatInput struct {
	data []byte
	ends []int
}

func newKcatInput(a opArgs, from, to int) (kcatInput, error) {
	var in kcatInput
	for i := from; i < to; i++ {
		s := shaped(a.Prefix, i, 0)
		for _, f := range []string{*s.K, *s.V} {
			if strings.Contains(f, kcatKeyDelim) || strings.Contains(f, kcatRecordDelim) {
				return in, fmt.Errorf("record %d contains kcat's delimiters: %q", i, f)
			}
		}
		in.data = append(in.data, *s.K+kcatKeyDelim+*s.V+kcatRecordDelim...)
		in.ends = append(in.ends, len(in.data))
	}
	return in, nil
}

// upTo is how much of the input kcat must be given for it to produce
// record j (counted from the input's first).
func (in kcatInput) upTo(j int) int {
	n := (in.ends[j] + kcatReadSize - 1) / kcatReadSize * kcatReadSize
	return min(n, len(in.data))
}

// produce runs kcat -P. kcat's -H headers go with every record of a run
// and it cannot set timestamps (so a.TimestampBase is not used; records
// get their creation time). So that every record gets its own h1 header,
// each record is produced by a kcat run of its own, unless what is asked
// belongs to a producer session: compression (a one-record batch that
// compressing does not shrink is sent uncompressed by librdkafka),
// idempotence (each run is a new producer ID), or a paced stream. Those
// are one run, whose records carry only the h2 header, which all share.
func (d kcatDriver) produce(ctx context.Context, t testing.TB, a opArgs, line func(json.RawMessage)) error {
	args := []string{"-P", "-b", a.Bootstrap, "-t", a.Topic, "-p", strconv.Itoa(int(a.Partition)),
		"-K", kcatKeyDelim, "-D", kcatRecordDelim, "-v", "-v", // verbosity 3 prints delivery reports
		"-X", "acks=" + strconv.Itoa(a.Acks),
		// librdkafka's delivery timeout counts from when the record is
		// handed to it (kcat sets no timestamp).
		"-X", "message.timeout.ms=" + strconv.FormatInt(a.Timeout.Milliseconds(), 10)}
	switch a.Compression {
	case "none":
	case "gzip", "snappy", "lz4", "zstd":
		args = append(args, "-z", a.Compression)
	default:
		return fmt.Errorf("unknown compression %q", a.Compression)
	}
	if a.Compression == "none" && !a.Idempotent && a.DelayMs == 0 {
		for i := range a.Count {
			headers := []string{"-H", "h1=" + strconv.Itoa(i), "-H", "h2=" + a.Prefix}
			if err := d.produceRun(ctx, t, a, line, i, i+1, slices.Concat(args, headers)); err != nil {
				return err
			}
		}
		return nil
	}
	args = append(args, "-H", "h2="+a.Prefix)
	if a.Idempotent {
		args = append(args, "-X", "enable.idempotence=true")
	} else {
		// Delivery reports come in the order of the records (which is
		// how they are matched) even through retries.
		args = append(args, "-X", "max.in.flight=1")
	}
	if a.DelayMs == 0 {
		args = append(args, "-X", "linger.ms=100") // one batch
	}
	return d.produceRun(ctx, t, a, line, 0, a.Count, args)
}

// produceRun produces records from..to-1 with one kcat run and prints
// an acknowledgement for every delivery report. librdkafka reports the
// deliveries to a partition in the order of the records, which says
// which record a report is for.
func (d kcatDriver) produceRun(ctx context.Context, t testing.TB, a opArgs, line func(json.RawMessage), from, to int, args []string) error {
	in, err := newKcatInput(a, from, to)
	if err != nil {
		return err
	}
	var (
		mu        sync.Mutex
		delivered int
		emitErr   error
	)
	report := func(s string) bool {
		m := kcatDelivered.FindStringSubmatch(s)
		if m == nil {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		o, _ := strconv.ParseInt(m[2], 10, 64)
		if a.Acks == 0 || o < 0 {
			o = -1
		}
		if from+delivered < to {
			if err := emit(line, ackLine{I: from + delivered, O: o}); err != nil && emitErr == nil {
				emitErr = err
			}
		}
		delivered++
		return true
	}
	input := func(w io.Writer, _ *os.Process) error {
		if a.DelayMs == 0 {
			_, err := w.Write(in.data)
			return err
		}
		written := 0
		for j := range to - from {
			n := in.upTo(j)
			if _, err := w.Write(in.data[written:n]); err != nil {
				return fmt.Errorf("record %d: %w", from+j, err)
			}
			written = n
			select {
			case <-time.After(time.Duration(a.DelayMs) * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	err = d.exec(ctx, t, input, func(b []byte) error { return fmt.Errorf("kcat -P printed %q", b) }, report, args...)
	mu.Lock()
	defer mu.Unlock()
	switch {
	case err != nil:
		return fmt.Errorf("kcat produce of records %d-%d (%d delivered): %w", from, to-1, delivered, err)
	case emitErr != nil:
		return emitErr
	case delivered != to-from:
		return fmt.Errorf("kcat produce of records %d-%d: %d delivery reports", from, to-1, delivered)
	}
	return nil
}

// kcatMessage is a record as kcat -J prints it.
type kcatMessage struct {
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	TsType    string    `json:"tstype"`
	Ts        int64     `json:"ts"`
	Headers   []*string `json:"headers"` // name, value, name, value...
	Key       *string   `json:"key"`
	Payload   *string   `json:"payload"`
}

func (m kcatMessage) line() (recordLine, error) {
	l := recordLine{P: m.Partition, O: m.Offset, K: m.Key, V: m.Payload, Ts: m.Ts, H: [][2]string{}}
	if m.TsType == "" {
		l.Ts = -1 // no timestamp
	}
	if len(m.Headers)%2 != 0 {
		return l, fmt.Errorf("kcat printed an odd number of header names and values")
	}
	for i := 0; i < len(m.Headers); i += 2 {
		var name, value string
		if m.Headers[i] != nil {
			name = *m.Headers[i]
		}
		if m.Headers[i+1] != nil {
			value = *m.Headers[i+1]
		}
		l.H = append(l.H, [2]string{name, value})
	}
	return l, nil
}

// consume runs kcat -C from a.From (s@ for a timestamp) or, for
// group-consume, kcat -G, and prints the a.Count records it prints.
//
// kcat -G commits exactly what it printed: librdkafka stores the offset of
// every record it hands to kcat (enable.auto.offset.store), kcat stops
// polling after -c records, and closing the consumer commits the stored
// offsets (enable.auto.commit) before it leaves the group. librdkafka also
// commits the stored offsets every 5 s (auto.commit.interval.ms), which
// kcat cannot change: -X tries a name on the topic configuration first,
// where auto.commit.interval.ms is the legacy consumer's.
func (d kcatDriver) consume(ctx context.Context, t testing.TB, op string, a opArgs, line func(json.RawMessage)) error {
	args := []string{"-J", "-u", "-b", a.Bootstrap, "-c", strconv.Itoa(a.Count)}
	if op == "group-consume" {
		args = append(args, "-G", a.Group, "-X", "client.id=pubg1-matrix-kcat", "-X", "auto.offset.reset=earliest", a.Topic)
	} else {
		kind, n, err := parseFrom(a.From)
		if err != nil {
			return fmt.Errorf("--from %q: %w", a.From, err)
		}
		at := map[string]string{"earliest": "beginning", "latest": "end", "ts": "s@" + strconv.FormatInt(n, 10)}[kind]
		if kind == "offset" {
			at = strconv.FormatInt(n, 10)
		}
		args = append(args, "-C", "-t", a.Topic, "-p", strconv.Itoa(int(a.Partition)), "-o", at)
		if a.ReadCommitted {
			// librdkafka's default, named all the same.
			args = append(args, "-X", "isolation.level=read_committed")
		}
	}
	got := 0
	err := d.exec(ctx, t, nil, func(b []byte) error {
		var m kcatMessage
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("kcat printed %q: %w", b, err)
		}
		l, err := m.line()
		if err != nil {
			return err
		}
		got++
		return emit(line, l)
	}, nil, args...)
	if err != nil {
		return fmt.Errorf("kcat %s: %d of %d records: %w", op, got, a.Count, err)
	}
	if got != a.Count {
		return fmt.Errorf("kcat %s printed %d records, want %d", op, got, a.Count)
	}
	return nil
}

// kcatTxnPadding ends the input of a transaction's kcat -P: empty
// records, which kcat skips. kcat 1.7.1 hands a record to librdkafka only
// once about 1 KiB of input has followed it (or the input has ended), and
// an aborted transaction's records must all be in the log while its input
// is still open (see produceTxn).
var kcatTxnPadding = strings.Repeat(kcatRecordDelim, 1024/len(kcatRecordDelim))

// Lines of kcat's transactional producer on stderr.
const (
	kcatTxnCommitted = "% Transaction successfully committed"
	kcatTxnAborting  = "% Aborting transaction due to termination signal"
)

// produceTxn runs one kcat -P per transaction of a.Commit. With
// -X transactional.id kcat produces its whole input in one transaction,
// which it commits when the input ends and aborts when it gets a
// termination signal. So a committed transaction is an input that ends; an
// aborted one is an input that stays open until its records are in the
// log (the high watermarks, read with franz-go, have grown by a.Count),
// then SIGINT and the end of the input. kcat picks each record's partition
// with librdkafka's partitioner (by key), as -p would hold for the whole
// transaction, and its -H header goes with every record of a run, so the
// records carry only the h2 header.
func (d kcatDriver) produceTxn(ctx context.Context, t testing.TB, a opArgs, line func(json.RawMessage)) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(a.Bootstrap, ",")...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	logEnd := func() (int64, error) {
		ends, err := adm.ListEndOffsets(ctx, a.Topic)
		if err != nil {
			return 0, err
		}
		var sum int64
		ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
		return sum, ends.Error()
	}
	for j, commit := range a.Commit {
		ta := a
		ta.Prefix = txnPrefix(a.Prefix, j)
		in, err := newKcatInput(ta, 0, a.Count)
		if err != nil {
			return err
		}
		data := append(in.data, kcatTxnPadding...)
		before, err := logEnd()
		if err != nil {
			return fmt.Errorf("end offsets of %s: %w", a.Topic, err)
		}
		args := []string{"-P", "-b", a.Bootstrap, "-t", a.Topic, "-K", kcatKeyDelim, "-D", kcatRecordDelim,
			"-H", "h2=" + ta.Prefix, "-X", "transactional.id=" + a.TxnID,
			"-m", strconv.Itoa(int(a.Timeout / time.Second / 2))} // the transaction calls' timeout
		var mu sync.Mutex
		said := map[string]bool{}
		stderr := func(l string) bool {
			for _, s := range []string{kcatTxnCommitted, kcatTxnAborting} {
				if strings.HasPrefix(l, s) {
					mu.Lock()
					said[s] = true
					mu.Unlock()
				}
			}
			return false // logged all the same
		}
		input := func(w io.Writer, proc *os.Process) error {
			if _, err := w.Write(data); err != nil || commit {
				return err
			}
			for {
				end, err := logEnd()
				if err == nil && end >= before+int64(a.Count) {
					break
				}
				select {
				case <-time.After(pollEvery):
				case <-ctx.Done():
					return fmt.Errorf("waiting for the records of transaction %d in the log: %w", j, ctx.Err())
				}
			}
			if err := proc.Signal(os.Interrupt); err != nil {
				return fmt.Errorf("signalling kcat: %w", err)
			}
			return nil
		}
		err = d.exec(ctx, t, input, func(b []byte) error { return fmt.Errorf("kcat -P printed %q", b) }, stderr, args...)
		if err != nil {
			return fmt.Errorf("kcat transaction %d (%s): %w", j, txnEndName(commit), err)
		}
		mu.Lock()
		committed, aborting := said[kcatTxnCommitted], said[kcatTxnAborting]
		mu.Unlock()
		if commit != committed || commit == aborting {
			return fmt.Errorf("kcat transaction %d: want %s, kcat said committed %v, aborting %v", j, txnEndName(commit), committed, aborting)
		}
		if err := emit(line, txnEndLine{Txn: j, End: txnEndName(commit)}); err != nil {
			return err
		}
	}
	return nil
}
