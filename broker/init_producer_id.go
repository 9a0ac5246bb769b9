package broker

import (
	"context"

	"github.com/pubg1/pubg1/kproto"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (b *Broker) initProducerIDAPI() kproto.API {
	return kproto.API{Key: kmsg.InitProducerID.Int16(), MinVersion: 0, MaxVersion: 5, Handle: b.initProducerID}
}

// initProducerID gives an idempotent producer a fresh ID at epoch 0, also
// when it asks to bump the epoch of the ID it has (KIP-360): a fresh ID has
// no sequence state anywhere, which is what the bump is for. A
// transactional ID's producer gets its ID and epoch from the ID's
// transaction coordinator.
func (b *Broker) initProducerID(_ context.Context, req *kproto.Request, respond func(kmsg.Response)) {
	r := req.Msg.(*kmsg.InitProducerIDRequest)
	resp := r.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if r.TransactionalID != nil {
		b.initProducerTxn(r, resp, respond)
		return
	}
	id, err := b.allocateProducerID()
	if err != nil {
		b.log.Error().Err(err).Msg("allocating producer ID")
		resp.ErrorCode = kerr.KafkaStorageError.Code
		respond(resp)
		return
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	respond(resp)
}
