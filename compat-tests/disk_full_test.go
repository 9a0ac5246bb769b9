package compattests

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pubg1/pubg1/bench"
	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// mountSmallFS mounts a tmpfs of size bytes on a fresh directory, for a
// broker's data directory, and unmounts it when the test ends (after the
// broker, whose cleanup is registered later, has stopped).
func mountSmallFS(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("mounting a small filesystem needs root (CI runs as root)")
	}
	dir := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mounting a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("unmounting %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// resizeFS grows (or shrinks) a tmpfs mounted by mountSmallFS.
func resizeFS(t *testing.T, dir string, size int64) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", fmt.Sprintf("remount,size=%d", size), dir).CombinedOutput(); err != nil {
		t.Fatalf("resizing the tmpfs: %v: %s", err, out)
	}
}

// TestDiskFull fills a broker's data directory, a 192 MiB filesystem with
// a 64 MiB free-space reserve, with an idempotent acks=all producer while
// a consumer keeps reading. Below the reserve the broker must refuse
// produce with KAFKA_STORAGE_ERROR, keep serving fetches and metadata, and
// not crash; once the filesystem is enlarged, writes resume by themselves
// and every acknowledged record is in the log once, at its offset.
func TestDiskFull(t *testing.T) {
	const (
		fsSize   = 192 << 20
		reserve  = 64 << 20
		records  = 4600 // 32 KiB each: more than fits
		valueLen = 32 << 10
	)
	fs := mountSmallFS(t, fsSize)
	b := newBrokerProc(t, "", filepath.Join(fs, "data"), "--disk-free-reserve", fmt.Sprint(reserve))
	t.Cleanup(func() {
		if b.Alive() {
			b.Stop()
		}
		if t.Failed() {
			t.Logf("broker output:\n%s", b.Output())
		}
	})
	var err error
	for range launchAttempts {
		b.proc.Addr = freeAddr(t)
		if err = b.launch(); !errors.Is(err, bench.ErrPortTaken) {
			break
		}
	}
	if err != nil {
		t.Fatalf("starting broker: %v", err)
	}
	ctx := testContext(t, 4*time.Minute)
	const topic = "fills-the-disk"
	adm := kadm.NewClient(newClient(t, b))
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatalf("creating topic: %v", err)
	}

	// A consumer reads along the whole time.
	cctx, stopConsumer := context.WithCancel(ctx)
	var consumed atomic.Int64
	var consumerErr error
	var cwg sync.WaitGroup
	cwg.Add(1)
	go func() {
		defer cwg.Done()
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			consumerErr = err
			return
		}
		defer cl.Close()
		for cctx.Err() == nil {
			fs := cl.PollFetches(cctx)
			fs.EachError(func(_ string, _ int32, err error) {
				if !errors.Is(err, context.Canceled) {
					consumerErr = err
				}
			})
			consumed.Add(int64(fs.NumRecords()))
		}
	}()

	prod := newClient(t, b, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(3*time.Minute), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.MaxBufferedRecords(records), kgo.ProducerBatchMaxBytes(1<<20))
	var mu sync.Mutex
	var acks []ackedRecord
	var failed []error
	var pwg sync.WaitGroup
	for i := range records {
		v := fmt.Appendf(nil, "rec-%07d-", i)
		v = append(v, noise(valueLen-len(v))...)
		pwg.Add(1)
		prod.Produce(ctx, &kgo.Record{Topic: topic, Value: v}, func(r *kgo.Record, err error) {
			defer pwg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, err)
				return
			}
			acks = append(acks, ackedRecord{Partition: r.Partition, Offset: r.Offset, Value: string(r.Value), At: time.Now()})
		})
	}

	// The disk fills: a produce is refused with KAFKA_STORAGE_ERROR.
	var probes []ackedRecord
	var last string
	full := ktest.Until(ctx, 200*time.Millisecond, func() bool {
		probe := fmt.Appendf(nil, "probe-%07d-", len(probes))
		probe = append(probe, noise(valueLen-len(probe))...)
		batch := batchSpec{producerID: -1, timestamp: time.Now(), values: [][]byte{probe}}.build()
		resp, err := requestWithin(b.Addr(), produceRequest(9, topicRef{name: topic}, 0, batch), 15*time.Second)
		if err != nil {
			last = err.Error()
			return false
		}
		rp := resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0]
		if rp.ErrorCode == 0 {
			probes = append(probes, ackedRecord{Partition: 0, Offset: rp.BaseOffset, Value: string(probe)})
			last = "accepted"
			return false
		}
		last = kerr.ErrorForCode(rp.ErrorCode).Error()
		return rp.ErrorCode == kerr.KafkaStorageError.Code
	})
	if !full {
		mu.Lock()
		df, _ := exec.Command("df", "-h", fs).CombinedOutput()
		t.Fatalf("produce to a full disk never answered KAFKA_STORAGE_ERROR; last: %s; %d acknowledged, %d failed (%v)\n%s", last, len(acks), len(failed), failed, df)
	}
	mu.Lock()
	t.Logf("disk full after %d acknowledged records; %d consumed so far", len(acks), consumed.Load())
	mu.Unlock()
	if !strings.Contains(b.Output(), "below the reserve") {
		t.Errorf("the broker did not report the full disk in its log")
	}
	// Reads and metadata go on.
	if _, err := metadataWithin(b.Addr(), 5*time.Second, topic); err != nil {
		t.Errorf("metadata with the disk full: %v", err)
	}
	before := consumed.Load()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ok := ktest.Until(rctx, 50*time.Millisecond, func() bool { return consumed.Load() > before || consumed.Load() >= int64(len(acks)) })
	cancel()
	if !ok {
		t.Errorf("the consumer read nothing more with the disk full (%d records read)", consumed.Load())
	}
	if !b.Alive() {
		t.Fatalf("the broker died with the disk full")
	}
	// An offset commit needs room too: refused with NOT_COORDINATOR, as
	// Kafka answers when the offsets log refuses a write.
	const group = "commits-on-a-full-disk"
	if code := commitOffset(t, b, group, topic, 3); code != kerr.NotCoordinator.Code {
		t.Errorf("offset commit with the disk full: %v, want NOT_COORDINATOR", kerr.ErrorForCode(code))
	}

	// More room: the writes the producer retries go through.
	resizeFS(t, fs, 1<<30)
	pwg.Wait()
	stopConsumer()
	cwg.Wait()
	if consumerErr != nil {
		t.Errorf("consumer: %v", consumerErr)
	}
	if len(failed) > 0 {
		t.Errorf("%d records failed after the disk was enlarged, first: %v", len(failed), failed[0])
	}
	if !strings.Contains(b.Output(), "writes resume") {
		t.Errorf("the broker did not report that writes resumed")
	}
	if code := commitOffset(t, b, group, topic, 3); code != 0 {
		t.Errorf("offset commit after the disk was enlarged: %v", kerr.ErrorForCode(code))
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetching offsets: %v", err)
	}
	if o, ok := committed.Lookup(topic, 0); !ok || o.At != 3 {
		t.Errorf("committed offset after the disk was enlarged: %+v, want 3", o)
	}
	log := readPartition(ctx, t, b, topic)
	all := append(acks, probes...)
	reportLogProblems(t, "log after the disk filled up", checkTopicLog(log, all, true))
	if n := len(log[0]); n != len(all) {
		t.Errorf("log holds %d records, %d acknowledged", n, len(all))
	}
}

// readPartition reads partition 0 of topic from offset 0 to its end offset.
func readPartition(ctx context.Context, t *testing.T, b *brokerProc, topic string) topicLog {
	t.Helper()
	ends, err := newAdmin(t, b).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	end, _ := ends.Lookup(topic, 0)
	log := topicLog{}
	cl := newClient(t, b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(0)}}))
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for int64(len(log[0])) < end.Offset {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %d of %d records before %v", topic, len(log[0]), end.Offset, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			if old, dup := log.put(r.Partition, r.Offset, string(r.Value)); dup && old != string(r.Value) {
				t.Errorf("offset %d read as two different records", r.Offset)
			}
		})
	}
	return log
}

// noise is n printable bytes that do not compress, so that records take
// their size on disk.
func noise(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(rand.IntN(26))
	}
	return b
}

// commitOffset commits offset for partition 0 of topic in group, as a
// simple (memberless) commit, and returns the partition's error code.
func commitOffset(t *testing.T, b *brokerProc, group, topic string, offset int64) int16 {
	t.Helper()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 8
	req.Group, req.Generation = group, -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 0, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := requestWithin(b.Addr(), req, 15*time.Second)
	if err != nil {
		t.Fatalf("offset commit: %v", err)
	}
	return resp.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode
}

// TestDiskFullFollower fills the data directory of one follower of a
// three-replica partition (a 192 MiB filesystem with a 64 MiB reserve)
// while an idempotent acks=all producer writes: the leader and the other
// follower go on committing, so every record is acknowledged; the full
// follower refuses what would take its disk below the reserve without
// crashing. Once its filesystem is enlarged it catches up, and its copy is
// whole: with the other follower killed it commits new records with the
// leader, and once the leader is killed too and the other follower comes
// back, it leads with every acknowledged record.
func TestDiskFullFollower(t *testing.T) {
	const (
		fsSize   = 192 << 20
		reserve  = 64 << 20
		records  = 4600 // 32 KiB each: more than fits
		valueLen = 32 << 10
	)
	fs := mountSmallFS(t, fsSize) // before the cluster: unmounted after it stops
	c := startClusterWith(t, "--disk-free-reserve", fmt.Sprint(reserve))
	ctx := testContext(t, 4*time.Minute)
	const topic = "fills-a-follower"
	createClusterTopic(ctx, t, kadm.NewClient(c.client(nil)), topic, 1, 3)
	l := c.waitLeadersEverywhere(ctx, topic, 1, nil)[0]
	followers := l.followers()
	full, other := followers[0], followers[1]

	// The follower's data directory moves to the small filesystem.
	fb := c.broker(full)
	fb.Stop()
	c.dataDirOn(full, fs, true)
	fb.Restart()
	c.waitReady(ctx)

	prod := c.client(nil, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(3*time.Minute), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.MaxBufferedRecords(records), kgo.ProducerBatchMaxBytes(1<<20))
	recs := make([]*kgo.Record, records)
	for i := range recs {
		v := fmt.Appendf(nil, "rec-%07d-", i)
		recs[i] = &kgo.Record{Topic: topic, Partition: 0, Value: append(v, noise(valueLen-len(v))...)}
	}
	res := prod.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("producing while a follower's disk fills: %v", err)
	}
	acks := make([]ackedRecord, 0, records)
	for _, r := range res {
		acks = append(acks, ackedRecord{Partition: 0, Offset: r.Record.Offset, Value: string(r.Record.Value), At: time.Now()})
	}
	// The follower may still be receiving what the others committed.
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !ktest.Until(fctx, 50*time.Millisecond, func() bool { return strings.Contains(fb.Output(), "below the reserve") }) {
		t.Fatalf("broker %d did not report its full disk: the test filled nothing", full)
	}
	if !fb.Alive() {
		t.Fatalf("broker %d died with its disk full", full)
	}

	resizeFS(t, fs, 1<<30)
	// The follower must catch up: with the other follower down, the
	// leader commits only with it.
	c.holderLeads(ctx, topic, l, full, other, acks, "after", 50)
}

// dataDirOn points the stopped broker id's data directory at dir (a
// filesystem the test mounted), with a copy of what it held when keep is
// set, or empty, as a lost one.
func (c *cluster) dataDirOn(id int32, dir string, keep bool) {
	c.t.Helper()
	b := c.broker(id)
	if keep {
		if out, err := exec.Command("cp", "-a", "--sparse=always", b.dataDir+"/.", dir).CombinedOutput(); err != nil {
			c.t.Fatalf("copying broker %d's data directory: %v: %s", id, err, out)
		}
	}
	if err := os.RemoveAll(b.dataDir); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Symlink(dir, b.dataDir); err != nil {
		c.t.Fatal(err)
	}
}
