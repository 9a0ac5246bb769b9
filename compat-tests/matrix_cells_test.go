package compattests

// The cells of the compatibility matrix: each runs one feature with one
// client's driver and checks the outcome with franz-go (what the client
// produced is read back; what it must consume is produced beforehand).

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"testing"
)

const (
	matrixRecords = 20
	opTimeout     = 60 * time.Second
)

var matrixCells = map[string]cellFunc{
	"metadata":             cellMetadata,
	"create-delete-topic":  cellCreateDelete,
	"acks-0":               cellAcks(0),
	"acks-1":               cellAcks(1),
	"acks-all":             cellAcks(-1),
	"gzip":                 cellCodec("gzip", 1),
	"snappy":               cellCodec("snappy", 2),
	"lz4":                  cellCodec("lz4", 3),
	"zstd":                 cellCodec("zstd", 4),
	"record-fields":        cellRecordFields,
	"from-earliest":        cellFromEarliest,
	"from-latest":          cellFromLatest,
	"from-timestamp":       cellFromTimestamp,
	"from-committed":       cellFromCommitted,
	"group-rebalance":      cellGroupRebalance,
	"list-describe-groups": cellGroups,
	"idempotent":           cellIdempotent,
	"txn-produce":          cellTxnProduce,
	"read-committed":       cellReadCommitted,
}

// noProducedTimestamps are clients that cannot set a record's timestamp.
var noProducedTimestamps = map[string]bool{"kcat": true}

func (e *matrixEnv) args(topic string) opArgs {
	return opArgs{Bootstrap: e.b.Addr(), Topic: topic, Timeout: opTimeout}
}

// topic creates a topic of n partitions with franz-go.
func (e *matrixEnv) topic(ctx context.Context, t testing.TB, client, feature string, n int32) string {
	t.Helper()
	name := e.name(client, feature)
	createTopic(ctx, t, kadm.NewClient(newClient(t, e.b)), name, n, nil)
	return name
}

// produceShaped produces shaped records from..to-1 to partition 0 with
// franz-go, compressed with codec.
func (e *matrixEnv) produceShaped(ctx context.Context, t testing.TB, topic, prefix string, from, to int, tsBase int64, codec kgo.CompressionCodec) {
	t.Helper()
	cl := newClient(t, e.b, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(codec), kgo.ProducerLinger(0))
	recs := make([]*kgo.Record, 0, to-from)
	for i := from; i < to; i++ {
		s := shaped(prefix, i, tsBase)
		r := &kgo.Record{Key: []byte(*s.K), Value: []byte(*s.V), Partition: 0}
		if tsBase != 0 {
			r.Timestamp = time.UnixMilli(s.Ts)
		}
		for _, h := range s.H {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h[0], Value: []byte(h[1])})
		}
		recs = append(recs, r)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing to %s: %v", topic, err)
	}
}

// readShaped reads n records of partition 0 from offset 0 with franz-go.
func (e *matrixEnv) readShaped(ctx context.Context, t testing.TB, b *brokerProc, topic string, n int) []recordLine {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	var out []recordLine
	for _, r := range consumeKgo(ctx, t, b, topic, map[int32]int64{0: 0}, n) {
		out = append(out, lineOf(r))
	}
	return out
}

func lineOf(r *kgo.Record) recordLine {
	l := recordLine{P: r.Partition, O: r.Offset, Ts: r.Timestamp.UnixMilli(), H: [][2]string{}}
	if r.Key != nil {
		k := string(r.Key)
		l.K = &k
	}
	if r.Value != nil {
		v := string(r.Value)
		l.V = &v
	}
	for _, h := range r.Headers {
		l.H = append(l.H, [2]string{h.Key, string(h.Value)})
	}
	return l
}

// checkAcks checks that every record 0..n-1 was acknowledged once, at its
// offset where the client reports one.
func checkAcks(t testing.TB, acks []ackLine, n int, firstOffset int64) {
	t.Helper()
	seen := make(map[int]int64, n)
	for _, a := range acks {
		if _, dup := seen[a.I]; dup {
			t.Errorf("record %d acknowledged twice", a.I)
		}
		seen[a.I] = a.O
		if a.O >= 0 && a.O != firstOffset+int64(a.I) {
			t.Errorf("record %d acknowledged at offset %d, want %d", a.I, a.O, firstOffset+int64(a.I))
		}
	}
	if len(seen) != n {
		t.Errorf("%d of %d records acknowledged", len(seen), n)
	}
}

func cellMetadata(ctx context.Context, t testing.TB, e *matrixEnv, client string, d driver) {
	topic := e.topic(ctx, t, client, "metadata", 3)
	want, err := metadataOf(e.b.Addr(), topic)
	if err != nil {
		t.Fatal(err)
	}
	got := runOp[metadataLine](ctx, t, d, "metadata", e.args(topic))
	if len(got) != 1 {
		t.Fatalf("metadata printed %d lines, want 1", len(got))
	}
	m := got[0]
	if len(m.Brokers) != len(want.Brokers) {
		t.Fatalf("client sees brokers %+v, broker lists %d", m.Brokers, len(want.Brokers))
	}
	for i, b := range want.Brokers {
		g := m.Brokers[i]
		if g.ID != b.NodeID || g.Host != b.Host || g.Port != b.Port {
			t.Errorf("broker %d: client sees %+v, broker says %d %s:%d", i, g, b.NodeID, b.Host, b.Port)
		}
	}
	if m.Topic != topic || len(m.Partitions) != 3 {
		t.Fatalf("client sees topic %q with partitions %+v, want %q with 3", m.Topic, m.Partitions, topic)
	}
	for i, p := range m.Partitions {
		if p.P != int32(i) || p.Leader != want.Brokers[0].NodeID {
			t.Errorf("partition %d: client sees %+v, want leader %d", i, p, want.Brokers[0].NodeID)
		}
	}
}

func cellCreateDelete(ctx context.Context, t testing.TB, e *matrixEnv, client string, d driver) {
	name := e.name(client, "created")
	adm := kadm.NewClient(newClient(t, e.b))
	a := e.args(name)
	a.Partitions, a.RF = 3, 1
	runOp[map[string]any](ctx, t, d, "create", a)
	details, err := adm.ListTopics(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if td, ok := details[name]; !ok || td.Err != nil || len(td.Partitions) != 3 {
		t.Fatalf("after the client created %s the broker lists %+v", name, details)
	}
	runOp[map[string]any](ctx, t, d, "delete", e.args(name))
	if !ktest.Until(ctx, pollEvery, func() bool {
		m, err := metadataOf(e.b.Addr(), name)
		return err == nil && len(m.Topics) == 1 && m.Topics[0].ErrorCode == kerr.UnknownTopicOrPartition.Code
	}) {
		t.Fatalf("%s still listed after the client deleted it", name)
	}
}

// produceAndCheck has the client produce matrixRecords shaped records and
// reads them back.
func produceAndCheck(ctx context.Context, t testing.TB, e *matrixEnv, client string, d driver, feature string, a opArgs) string {
	t.Helper()
	topic := e.topic(ctx, t, client, feature, 1)
	a.Bootstrap, a.Topic, a.Timeout = e.b.Addr(), topic, opTimeout
	a.Count, a.Prefix = matrixRecords, feature
	a.TimestampBase = time.Now().Add(-time.Hour).UnixMilli()
	acks := runOp[ackLine](ctx, t, d, "produce", a)
	if a.Acks != 0 {
		checkAcks(t, acks, matrixRecords, 0)
	}
	c := recordCheck{prefix: feature, count: matrixRecords, tsBase: a.TimestampBase}
	if noProducedTimestamps[client] {
		c.tsBase = 0
	}
	// kcat produces one record per run to give each its own headers;
	// compressed and idempotent records must share a run, and so its
	// headers (-H applies to every record of a run).
	if client == "kcat" && (a.Compression != "none" || a.Idempotent) {
		c.noHeaders = true
	}
	checkShaped(t, e.readShaped(ctx, t, e.b, topic, matrixRecords), c)
	return topic
}

func cellAcks(acks int) cellFunc {
	return func(ctx context.Context, t testing.TB, e *matrixEnv, client string, d driver) {
		produceAndCheck(ctx, t, e, client, d, fmt.Sprintf("acks%d", acks), opArgs{Acks: acks, Compression: "none"})
	}
}

var kgoCodecs = map[string]kgo.CompressionCodec{
	"gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
	"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
}

// cellCodec: the client produces with the codec (and the stored batches
// are compressed with it), and consumes batches franz-go compressed with it.
func cellCodec(codec string, id int16) cellFunc {
	return func(ctx context.Context, t testing.TB, e *matrixEnv, client string, d driver) {
		topic := produceAndCheck(ctx, t, e, client, d, codec, opArgs{Acks: -1, Compression: codec})
		// A client may send a batch that the codec would not shrink
		// uncompressed (librdkafka does); at least one must be compressed,
		// and none with another codec.
		compressed := 0
		for _, b := range storedBatches(t, e.b, topic, 0) {
			switch got := b.Attributes & 7; got {
			case id:
				compressed++
			case 0:
			default:
				t.Errorf("a batch the client produced with %s is stored with codec %d, want %d", codec, got, id)
			}
		}
		if compressed == 0 {
			t.Errorf("no batch the client produced with %s is compressed with it", codec)
		}
		in := e.topic(ctx, t, client, codec+"-in", 1)
		ts := time.Now().Add(-time.Hour).UnixMilli()
		e.produceShaped(ctx, t, in, codec, 0, matrixRecords, ts, kgoCodecs[codec])
		a := e.args(in)
		a.From, a.Count = "earliest", matrixRecords
		checkShaped(t, runOp[recordLine](ctx, t, d, "consume", a), recordCheck{prefix: codec, count: matrixRecords, tsBase: ts})
	}
}

// storedBatches fetches a partition from offset 0 with a raw Fetch and
// returns its record batches as stored.
func storedBatches(t testing.TB, b *brokerProc, topic string, partition int32) []kmsg.RecordBatch {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(4)
	req.ReplicaID = -1
	req.MaxBytes = 1 << 20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = partition
	rp.PartitionMaxBytes = 1 << 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := requestTo(b.Addr(), req)
	if err != nil {
		t.Fatalf("raw fetch of %s/%d: %v", topic, partition, err)
	}
	fr := resp.(*kmsg.FetchResponse)
	if len(fr.Topics) != 1 || len(fr.Topics[0].Partitions) != 1 || fr.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("raw fetch of %s/%d: %+v", topic, partition, fr.Topics)
	}
	data := fr.Topics[0].Partitions[0].RecordBatches
	var out []kmsg.RecordBatch
	for len(data) >= 12 {
		size := 12 + int(int32(data[8])<<24|int32(data[9])<<16|int32(data[10])<<8|int32(data[11]))
		if size > len(data) {
			break // a partial batch at the end of the answer
		}
		var batch kmsg.RecordBatch
		if err := batch.ReadFrom(data[:size]); err != nil {
			t.Fatalf("decoding a stored batch of %s/%d: %v", topic, partition, err)
		}
		out = append(out, batch)
		data = data[size:]
	}
	if len(out) == 0 {
		t.Fatalf("raw fetch of %s/%d returned no batch", topic, partition)
	}
	return out
}

// cellRecordFields: keys, headers and timestamps the client produces reach
// the log; those franz-go produced reach the client.
func cellRecordFields(ctx context.Context, t testing.TB, e *matrixEnv, client string, d driver) {
	produceAndCheck(ctx, t, e, client, d, "fields", opArgs{Acks: -1, Compression: "none"})
	topic := e.topic(ctx, t, client, "fields-in", 1)
	ts := time.Now().Add(-2 * time.Hour).UnixMilli()
	e.produceShaped(ctx, t, topic, "fields", 0, matrixRecords, ts, kgo.NoCompression())
	a := e.args(topic)
	a.From, a.Count = "earliest", matrixRecords
	checkShaped(t, runOp[recordLine](ctx, t, d, "consume", a), recordCheck{prefix: "fields", count: matrixRecords, tsBase: ts})
}

func cellFromEarliest(ctx context.Context, t testing.TB, e *matrixEnv, client string, d driver) {
	topic := e.topic(ctx, t, client, "earliest", 1)
	e.produceShaped(ctx, t, topic, "early", 0, 10, 0, kgo.NoCompression())
	a := e.args(topic)
	a.From, a.Count = "earliest", 10
	checkShaped(t, runOp[recordLine](ctx, t, d, "consume", a), recordCheck{prefix: "early", count: 10})
}

// cellFromLatest: a consumer starting at the latest offset gets the first
// record produced after it started, and none of the earlier ones.
func cellFromLatest(ctx context.Context, t testing.TB, e *matrixEnv, client string, d driver) {
	topic := e.topic(ctx, t, client, "latest", 1)
	e.produceShaped(ctx, t, topic, "old", 0, 5, 0, kgo.NoCompression())
	a := e.args(topic)
	a.From, a.Count = "latest", 1
	done := make(chan struct{})
	var got []recordLine
	go func() {
		defer close(done)
		got = runOp[recordLine](ctx, t, d, "consume", a)
	}()
	// The client's start position is unknown from outside; keep producing
	// until it has read one record.
	cl := newClient(t, e.b, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	next := 0
	ticker := time.NewTicker(300 * time.Millisecond)
	defer ticker.Stop()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-ticker.C:
			s := shaped("new", next, 0)
			r := &kgo.Record{Key: []byte(*s.K), Value: []byte(*s.V), Partition: 0}
			for _, h := range s.H {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: h[0], Value: []byte(h[1])})
			}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("producing: %v", err)
			}
			next++
		}
	}
	if len(got) != 1 {
		t.Fatalf("consumed %d records, want 1", len(got))
	}
	if got[0].O < 5 || got[0].V == nil || !strings.HasPrefix(*got[0].V, "new-") {
		t.Fatalf("a consumer from latest got %+v (value %s), one of the records produced before it started", got[0], strOrNull(got[0].V))
	}
	first := int(got[0].O - 5)
	checkShaped(t, got, recordCheck{prefix: "new", count: 1, first: first, firstOffset: got[0].O})
}

func cellFromTimestamp(ctx context.Context, t testing.TB, e *matrixEnv, client string, d driver) {
	topic := e.topic(ctx, t, client, "timestamp", 1)
	ts := time.Now().Add(-3 * time.Hour).UnixMilli()
	e.produceShaped(ctx, t, topic, "ts", 0, 10, ts, kgo.NoCompression())
	a := e.args(topic)
	a.From, a.Count = fmt.Sprintf("ts:%d", ts+6), 4
	checkShaped(t, runOp[recordLine](ctx, t, d, "consume", a), recordCheck{prefix: "ts", count: 4, first: 6, firstOffset: 6, tsBase: ts})
}

// cellFromCommitted: the client's group starts at the offset committed for
// it, and its own commit is what the broker then holds.
func cellFromCommitted(ctx context.Context, t testing.TB, e *matrixEnv, client string, d driver) {
	topic := e.topic(ctx, t, client, "committed", 1)
	group := topic + "-group"
	e.produceShaped(ctx, t, topic, "c", 0, 10, 0, kgo.NoCompression())
	adm := kadm.NewClient(newClient(t, e.b))
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: 4, LeaderEpoch: -1})
	if resp, err := adm.CommitOffsets(ctx, group, offs); err != nil || resp.Error() != nil {
		t.Fatalf("committing offset 4 for %s: %v %v", group, err, resp.Error())
	}
	a := e.args(topic)
	a.Group, a.Count = group, 3
	checkShaped(t, runOp[recordLine](ctx, t, d, "group-consume", a), recordCheck{prefix: "c", count: 3, first: 4, firstOffset: 4})
	fetched, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := fetched.Lookup(topic, 0); !ok || o.At != 7 {
		t.Fatalf("after the client consumed offsets 4-6 the group's committed offset is %+v, want 7", o)
	}
}

func cellGroupRebalance(_ context.Context, t testing.TB, _ *matrixEnv, client string, _ driver) {
	groupScenarios[client](t)
}

// cellGroups: the client lists the groups and describes one that a
// franz-go member keeps stable.
func cellGroups(ctx context.Context, t testing.TB, e *matrixEnv, client string, d driver) {
	topic := e.topic(ctx, t, client, "groups", 2)
	group := topic + "-group"
	cl := newClient(t, e.b, kgo.ClientID("matrix-member"), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.FetchMaxWait(200*time.Millisecond))
	pctx, cancel := context.WithCancel(ctx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for pctx.Err() == nil {
			cl.PollFetches(pctx)
		}
	}()
	defer func() { cancel(); <-polled }()
	adm := kadm.NewClient(newClient(t, e.b))
	if !ktest.Until(ctx, pollEvery, func() bool {
		ds, err := adm.DescribeGroups(ctx, group)
		return err == nil && ds[group].State == "Stable" && len(ds[group].Members) == 1
	}) {
		t.Fatalf("group %s never became stable", group)
	}
	got := runOp[groupsLine](ctx, t, d, "groups", opArgs{Bootstrap: e.b.Addr(), Group: group, Timeout: opTimeout})
	if len(got) != 1 {
		t.Fatalf("groups printed %d lines, want 1", len(got))
	}
	g := got[0]
	if !slices.Contains(g.Listed, group) {
		t.Errorf("groups listed %v without %s", g.Listed, group)
	}
	if g.Group != group || g.State != "Stable" || g.ProtocolType != "consumer" || len(g.Members) != 1 || g.Members[0].ClientID != "matrix-member" {
		t.Errorf("described %+v, want %s Stable consumer with the one member matrix-member", g, group)
	}
}

// cellIdempotent: the client's idempotent producer writes batches with a
// producer ID and sequences from 0.
func cellIdempotent(ctx context.Context, t testing.TB, e *matrixEnv, client string, d driver) {
	topic := produceAndCheck(ctx, t, e, client, d, "idem", opArgs{Acks: -1, Compression: "none", Idempotent: true})
	seq := int32(0)
	for _, b := range storedBatches(t, e.b, topic, 0) {
		if b.ProducerID < 0 || b.FirstSequence != seq {
			t.Fatalf("stored batch has producer ID %d and first sequence %d, want an ID and sequence %d", b.ProducerID, b.FirstSequence, seq)
		}
		seq += b.LastOffsetDelta + 1
	}
}

// cellLeaderKill: the client produces a paced stream to a partition
// replicated three times; its leader is SIGKILLed mid-stream and restarted
// after the stream ends. Every record must be acknowledged and in the log
// (once, for idempotent producers), and the client reads them all back.
func cellLeaderKill(ctx context.Context, t testing.TB, e *matrixEnv, client string, d driver) {
	c := e.cluster
	const n, delay = 300, 20
	topic := e.name(client, "leader-kill")
	// Every broker up, listed by every broker, with a controller: the
	// previous client's cell restarted the broker it killed.
	if !ktest.Until(ctx, pollEvery, func() bool {
		for id := int32(1); id <= clusterSize; id++ {
			m, err := metadataOf(c.broker(id).Addr())
			if err != nil || len(m.Brokers) != clusterSize || m.ControllerID < 1 {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("the cluster is not whole before the cell")
	}
	adm := kadm.NewClient(c.client(c.liveIDs()))
	if resp, err := adm.CreateTopic(ctx, 1, 3, nil, topic); err != nil {
		t.Fatalf("creating %s: %v (%s)", topic, err, resp.ErrMessage)
	}
	// Every broker knows the leader before the client asks any of them.
	var leader int32
	if !ktest.Until(ctx, pollEvery, func() bool {
		leader = -1
		for id := int32(1); id <= clusterSize; id++ {
			ls, err := c.leadersFrom(id, topic)
			if err != nil || ls[0].Leader < 1 || (leader > 0 && ls[0].Leader != leader) {
				return false
			}
			leader = ls[0].Leader
		}
		return true
	}) {
		t.Fatalf("no leader for %s known to every broker", topic)
	}
	defer func() {
		if !c.broker(leader).Alive() {
			c.broker(leader).Restart() // for the next client's cell
		}
	}()
	bootstrap := strings.Join(c.addrs(c.liveIDs()), ",")
	_, idempotent := matrixCellsIdempotent[client]
	a := opArgs{Bootstrap: bootstrap, Topic: topic, Count: n, Prefix: "lk", Acks: -1, Compression: "none",
		Idempotent: idempotent, DelayMs: delay, Timeout: 2 * time.Minute}
	done := make(chan struct{})
	var acks []ackLine
	go func() {
		defer close(done)
		acks = runOp[ackLine](ctx, t, d, "produce", a)
	}()
	select {
	case <-done:
		t.Fatalf("the stream ended before the leader was killed")
	case <-time.After(n * delay * time.Millisecond / 3):
	}
	t.Logf("killing broker %d, the leader of %s", leader, topic)
	c.broker(leader).Kill()
	<-done
	if t.Failed() {
		return
	}
	c.broker(leader).Restart()
	switch {
	case len(acks) == 0: // the client reports no acknowledgements
	case idempotent:
		checkAcks(t, acks, n, 0) // each record once, at its place
	default:
		checkAcksAnyOffset(t, acks, n)
	}
	// Read everything back with the client from the cluster.
	end := int64(-1)
	if !ktest.Until(ctx, pollEvery, func() bool {
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return false
		}
		o, ok := ends.Lookup(topic, 0)
		end = o.Offset
		return ok && o.Err == nil && end >= n
	}) {
		t.Fatalf("%s ends at %d after %d acknowledged records", topic, end, n)
	}
	ra := opArgs{Bootstrap: bootstrap, Topic: topic, From: "earliest", Count: int(end), Timeout: opTimeout}
	got := runOp[recordLine](ctx, t, d, "consume", ra)
	seen := make(map[string]int, n)
	for _, r := range got {
		if r.V != nil {
			seen[*r.V]++
		}
	}
	for i := range n {
		v := *shaped("lk", i, 0).V
		switch {
		case seen[v] == 0:
			t.Errorf("acknowledged record %d is missing", i)
		case seen[v] > 1 && idempotent:
			t.Errorf("record %d of an idempotent producer is in the log %d times", i, seen[v])
		}
	}
	if idempotent && end != n {
		t.Errorf("the log of an idempotent producer holds %d records, want %d", end, n)
	}
	t.Logf("%d records acknowledged, %d in the log", n, end)
}

// matrixCellsIdempotent are the clients whose leader-kill stream is
// idempotent (the others may duplicate on retry, as in Kafka).
var matrixCellsIdempotent = map[string]struct{}{
	"franz-go": {}, "sarama": {}, "kcat": {}, "confluent": {}, "kafkajs": {},
}

// checkAcksAnyOffset checks that every record 0..n-1 was acknowledged once.
func checkAcksAnyOffset(t testing.TB, acks []ackLine, n int) {
	t.Helper()
	seen := make(map[int]bool, n)
	for _, a := range acks {
		if seen[a.I] {
			t.Errorf("record %d acknowledged twice", a.I)
		}
		seen[a.I] = true
	}
	if len(seen) != n {
		t.Errorf("%d of %d records acknowledged", len(seen), n)
	}
}
