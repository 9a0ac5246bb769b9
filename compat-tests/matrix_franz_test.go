package compattests

// franz-go's driver of the compatibility matrix (DRIVERS.md), in-process.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type franzDriver struct{}

// emit sends v as one output line.
func emit(line func(json.RawMessage), v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	line(b)
	return nil
}

// startOffset parses a consume operation's --from.
func parseFrom(from string) (kind string, n int64, err error) {
	switch {
	case from == "earliest" || from == "latest":
		return from, 0, nil
	case strings.HasPrefix(from, "ts:"):
		n, err = strconv.ParseInt(strings.TrimPrefix(from, "ts:"), 10, 64)
		return "ts", n, err
	}
	n, err = strconv.ParseInt(from, 10, 64)
	return "offset", n, err
}

func (franzDriver) run(ctx context.Context, t testing.TB, op string, a opArgs, line func(json.RawMessage)) error {
	ctx, cancel := context.WithTimeout(ctx, a.Timeout)
	defer cancel()
	seeds := kgo.SeedBrokers(strings.Split(a.Bootstrap, ",")...)
	switch op {
	case "metadata", "create", "delete", "groups":
		cl, err := kgo.NewClient(seeds)
		if err != nil {
			return err
		}
		defer cl.Close()
		return franzAdmin(ctx, kadm.NewClient(cl), op, a, line)
	case "produce":
		return franzProduce(ctx, seeds, a, line)
	case "produce-txn":
		return franzProduceTxn(ctx, seeds, a, line)
	case "consume", "group-consume":
		return franzConsume(ctx, seeds, op, a, line)
	}
	return fmt.Errorf("unknown operation %q", op)
}

func franzAdmin(ctx context.Context, adm *kadm.Client, op string, a opArgs, line func(json.RawMessage)) error {
	switch op {
	case "metadata":
		m, err := adm.Metadata(ctx, a.Topic)
		if err != nil {
			return err
		}
		out := metadataLine{Topic: a.Topic}
		for _, b := range m.Brokers {
			out.Brokers = append(out.Brokers, struct {
				ID   int32  `json:"id"`
				Host string `json:"host"`
				Port int32  `json:"port"`
			}{b.NodeID, b.Host, b.Port})
		}
		td := m.Topics[a.Topic]
		if td.Err != nil {
			return td.Err
		}
		for _, p := range td.Partitions.Sorted() {
			out.Partitions = append(out.Partitions, struct {
				P      int32 `json:"p"`
				Leader int32 `json:"leader"`
			}{p.Partition, p.Leader})
		}
		return emit(line, out)
	case "create":
		resp, err := adm.CreateTopic(ctx, a.Partitions, a.RF, nil, a.Topic)
		if err != nil {
			return fmt.Errorf("%w (%s)", err, resp.ErrMessage)
		}
		return emit(line, map[string]string{"created": a.Topic})
	case "delete":
		resp, err := adm.DeleteTopic(ctx, a.Topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			return err
		}
		return emit(line, map[string]string{"deleted": a.Topic})
	case "groups":
		listed, err := adm.ListGroups(ctx)
		if err != nil {
			return err
		}
		described, err := adm.DescribeGroups(ctx, a.Group)
		if err != nil {
			return err
		}
		g := described[a.Group]
		if g.Err != nil {
			return g.Err
		}
		out := groupsLine{Listed: listed.Groups(), Group: g.Group, State: g.State, ProtocolType: g.ProtocolType}
		slices.Sort(out.Listed)
		for _, m := range g.Members {
			out.Members = append(out.Members, struct {
				MemberID   string `json:"member_id"`
				ClientID   string `json:"client_id"`
				ClientHost string `json:"client_host"`
			}{m.MemberID, m.ClientID, m.ClientHost})
		}
		return emit(line, out)
	}
	return fmt.Errorf("unknown operation %q", op)
}

func franzProduce(ctx context.Context, seeds kgo.Opt, a opArgs, line func(json.RawMessage)) error {
	opts := []kgo.Opt{seeds, kgo.DefaultProduceTopic(a.Topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0)}
	switch a.Acks {
	case 0:
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()))
	case 1:
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()))
	default:
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	}
	if !a.Idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	if a.Compression != "none" {
		opts = append(opts, kgo.ProducerBatchCompression(kgoCodecs[a.Compression]))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for i := range a.Count {
		s := shaped(a.Prefix, i, a.TimestampBase)
		r := &kgo.Record{Key: []byte(*s.K), Value: []byte(*s.V), Partition: a.Partition}
		if a.TimestampBase != 0 {
			r.Timestamp = time.UnixMilli(s.Ts)
		}
		for _, h := range s.H {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h[0], Value: []byte(h[1])})
		}
		wg.Add(1)
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = fmt.Errorf("record %d: %w", i, err)
				}
				return
			}
			o := r.Offset
			if a.Acks == 0 {
				o = -1
			}
			if err := emit(line, ackLine{I: i, O: o}); err != nil && first == nil {
				first = err
			}
		})
		if a.DelayMs > 0 {
			select {
			case <-time.After(time.Duration(a.DelayMs) * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
	wg.Wait()
	return first
}

// franzProduceTxn runs one transaction per entry of a.Commit with a
// transactional producer: record i of transaction j goes to partition
// i mod a.Partitions, and the transaction ends once all are acknowledged.
func franzProduceTxn(ctx context.Context, seeds kgo.Opt, a opArgs, line func(json.RawMessage)) error {
	cl, err := kgo.NewClient(seeds, kgo.TransactionalID(a.TxnID), kgo.DefaultProduceTopic(a.Topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	if err != nil {
		return err
	}
	defer cl.Close()
	for j, commit := range a.Commit {
		if err := cl.BeginTransaction(); err != nil {
			return fmt.Errorf("transaction %d: begin: %w", j, err)
		}
		recs := make([]*kgo.Record, 0, a.Count)
		for i := range a.Count {
			s := shaped(txnPrefix(a.Prefix, j), i, 0)
			r := &kgo.Record{Key: []byte(*s.K), Value: []byte(*s.V), Partition: int32(i) % a.Partitions}
			for _, h := range s.H {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: h[0], Value: []byte(h[1])})
			}
			recs = append(recs, r)
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return fmt.Errorf("transaction %d: produce: %w", j, err)
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			return fmt.Errorf("transaction %d: %s: %w", j, txnEndName(commit), err)
		}
		if err := emit(line, txnEndLine{Txn: j, End: txnEndName(commit)}); err != nil {
			return err
		}
	}
	return nil
}

func franzConsume(ctx context.Context, seeds kgo.Opt, op string, a opArgs, line func(json.RawMessage)) error {
	opts := []kgo.Opt{seeds, kgo.FetchMaxWait(500 * time.Millisecond)}
	if a.ReadCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	if op == "group-consume" {
		opts = append(opts, kgo.ConsumerGroup(a.Group), kgo.ConsumeTopics(a.Topic), kgo.DisableAutoCommit(),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	} else {
		kind, n, err := parseFrom(a.From)
		if err != nil {
			return err
		}
		at := kgo.NewOffset()
		switch kind {
		case "earliest":
			at = at.AtStart()
		case "latest":
			at = at.AtEnd()
		case "ts":
			at = at.AfterMilli(n)
		default:
			at = at.At(n)
		}
		opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{a.Topic: {a.Partition: at}}))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var got []*kgo.Record
	for len(got) < a.Count {
		fs := cl.PollRecords(ctx, a.Count-len(got))
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%d of %d records: %w", len(got), a.Count, err)
		}
		if err := fs.Err(); err != nil {
			return err
		}
		for _, r := range fs.Records() {
			got = append(got, r)
			if err := emit(line, lineOf(r)); err != nil {
				return err
			}
		}
	}
	if op == "group-consume" {
		if err := cl.CommitRecords(ctx, got...); err != nil {
			return fmt.Errorf("committing: %w", err)
		}
		cl.LeaveGroup()
	}
	return nil
}
