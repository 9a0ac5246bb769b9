package broker

import (
	"context"
	"regexp"
	"slices"
	"time"

	"github.com/pubg1/pubg1/coordinator"
	"github.com/pubg1/pubg1/kproto"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The transaction admin APIs: DescribeTransactions and ListTransactions
// (kafka-transactions.sh describe / list) answer from this broker's
// transaction coordinator; DescribeProducers from its partition leaders.

func (b *Broker) describeTransactionsAPI() kproto.API {
	return kproto.API{Key: kmsg.DescribeTransactions.Int16(), MinVersion: 0, MaxVersion: 0, Handle: handle(b.describeTransactions)}
}

func (b *Broker) describeTransactions(_ context.Context, _ *kproto.Request, r *kmsg.DescribeTransactionsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	for _, id := range r.TransactionalIDs {
		st := kmsg.NewDescribeTransactionsResponseTransactionState()
		st.TransactionalID = id
		d, err := b.txns.Describe(id)
		if err != nil {
			st.ErrorCode = errorCode(err)
			resp.TransactionStates = append(resp.TransactionStates, st)
			continue
		}
		st.State, st.TimeoutMillis = d.State.String(), int32(d.Timeout.Milliseconds())
		st.StartTimestamp = -1
		if !d.Start.IsZero() {
			st.StartTimestamp = d.Start.UnixMilli()
		}
		st.ProducerID, st.ProducerEpoch = d.ProducerID, d.Epoch
		for _, tp := range d.Partitions {
			if n := len(st.Topics); n == 0 || st.Topics[n-1].Topic != tp.Topic {
				t := kmsg.NewDescribeTransactionsResponseTransactionStateTopic()
				t.Topic = tp.Topic
				st.Topics = append(st.Topics, t)
			}
			t := &st.Topics[len(st.Topics)-1]
			t.Partitions = append(t.Partitions, tp.Partition)
		}
		resp.TransactionStates = append(resp.TransactionStates, st)
	}
	return resp
}

func (b *Broker) listTransactionsAPI() kproto.API {
	return kproto.API{Key: kmsg.ListTransactions.Int16(), MinVersion: 0, MaxVersion: 2, Handle: handle(b.listTransactions)}
}

func (b *Broker) listTransactions(_ context.Context, _ *kproto.Request, r *kmsg.ListTransactionsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ListTransactionsResponse)
	known := kmsg.TransactionStateStrings()
	states := make(map[string]bool)
	for _, s := range r.StateFilters {
		if !slices.Contains(known, s) {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, s)
			continue
		}
		states[s] = true
	}
	var pattern *regexp.Regexp
	if r.Version >= 2 && r.TransactionalIDPattern != nil && *r.TransactionalIDPattern != "" {
		var err error
		if pattern, err = regexp.Compile(*r.TransactionalIDPattern); err != nil {
			resp.ErrorCode = kerr.InvalidRegularExpression.Code
			return resp
		}
	}
	txns, loading := b.txns.List()
	if loading {
		resp.ErrorCode = errorCode(coordinator.ErrLoadInProgress)
		return resp
	}
	now := time.Now()
	for _, d := range txns {
		switch {
		case len(r.StateFilters) > 0 && !states[d.State.String()]:
		case len(r.ProducerIDFilters) > 0 && !slices.Contains(r.ProducerIDFilters, d.ProducerID):
		case r.Version >= 1 && r.DurationFilterMillis >= 0 && (d.Start.IsZero() || now.Sub(d.Start).Milliseconds() <= r.DurationFilterMillis):
		case pattern != nil && !pattern.MatchString(d.TransactionalID):
		default:
			st := kmsg.NewListTransactionsResponseTransactionState()
			st.TransactionalID, st.ProducerID, st.TransactionState = d.TransactionalID, d.ProducerID, d.State.String()
			resp.TransactionStates = append(resp.TransactionStates, st)
		}
	}
	return resp
}

func (b *Broker) describeProducersAPI() kproto.API {
	return kproto.API{Key: kmsg.DescribeProducers.Int16(), MinVersion: 0, MaxVersion: 0, Handle: handle(b.describeProducers)}
}

func (b *Broker) describeProducers(_ context.Context, _ *kproto.Request, r *kmsg.DescribeProducersRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DescribeProducersResponse)
	for _, rt := range r.Topics {
		st := kmsg.NewDescribeProducersResponseTopic()
		st.Topic = rt.Topic
		t := b.topics.get(rt.Topic)
		for _, n := range rt.Partitions {
			sp := kmsg.NewDescribeProducersResponseTopicPartition()
			sp.Partition = n
			p, err := leaderPartition(t, n)
			if err != nil {
				sp.ErrorCode, sp.ErrorMessage = errorCode(err), errorMessage(err)
				st.Partitions = append(st.Partitions, sp)
				continue
			}
			for _, ps := range p.Producers() {
				ap := kmsg.NewDescribeProducersResponseTopicPartitionActiveProducer()
				ap.ProducerID, ap.ProducerEpoch, ap.LastSequence = ps.ID, int32(ps.Epoch), ps.LastSequence
				ap.LastTimestamp, ap.CoordinatorEpoch, ap.CurrentTxnStartOffset = -1, -1, ps.TxnStartOffset
				sp.ActiveProducers = append(sp.ActiveProducers, ap)
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
