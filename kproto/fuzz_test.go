package kproto

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// fuzzRegistry serves a few APIs, one with Reject, so every branch of
// ParseRequest is reachable from fuzzed bytes.
func fuzzRegistry() *Registry {
	reg := NewRegistry()
	noop := func(context.Context, *Request, func(kmsg.Response)) {}
	reg.Register(API{Key: 0, MinVersion: 3, MaxVersion: 11, Handle: noop})
	reg.Register(API{Key: 1, MinVersion: 4, MaxVersion: 16, Handle: noop})
	reg.Register(API{Key: 3, MinVersion: 0, MaxVersion: 12, Handle: noop})
	reg.Register(API{Key: 18, MinVersion: 0, MaxVersion: 4, Handle: noop})
	reg.Register(API{Key: 10, MinVersion: 1, MaxVersion: 4, Handle: noop,
		Reject: func(req kmsg.Request, code int16) kmsg.Response {
			resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
			resp.ErrorCode = code
			return resp
		},
	})
	return reg
}

func fuzzSeeds() [][]byte {
	var seeds [][]byte
	add := func(req kmsg.Request, versions ...int16) {
		for _, v := range versions {
			req.SetVersion(v)
			seeds = append(seeds, encodeRequest(int32(len(seeds)), req))
		}
	}

	produce := kmsg.NewPtrProduceRequest()
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "events"
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Records = []byte("not really a record batch, but bytes all the same")
	pt.Partitions = append(pt.Partitions, pp)
	produce.Topics = append(produce.Topics, pt)
	produce.Acks = -1
	add(produce, 3, 8, 9, 11)

	fetch := kmsg.NewPtrFetchRequest()
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "events"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.FetchOffset = 42
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	fetch.MaxWaitMillis = 500
	add(fetch, 4, 11, 12, 16)

	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	name := "events"
	mt.Topic = &name
	meta.Topics = append(meta.Topics, mt)
	add(meta, 0, 4, 8, 9, 12, 13)

	add(apiVersionsRequest(0), 0, 2, 3, 4, 5)
	seeds = append(seeds, AppendRequestHeader(nil, Header{Key: 18, Version: 127, CorrelationID: 1}))

	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorKey = "group"
	fc.CoordinatorKeys = []string{"group"}
	add(fc, 0, 2, 3, 5)
	return seeds
}

// FuzzDecodeRequest feeds arbitrary frame bodies through the read loop's
// parser. Whatever the bytes, it must return, not panic, and whatever it
// accepts must encode again.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	reg := fuzzRegistry()
	f.Fuzz(func(t *testing.T, body []byte) {
		req, reply, err := ParseRequest(reg, body)
		if err != nil {
			if req != nil || reply != nil {
				t.Fatalf("error %v with a request or reply", err)
			}
			return
		}
		if reply != nil {
			_ = reply.AppendTo(AppendResponseHeader(nil, reply, req.CorrelationID))
			return
		}
		if req.Msg == nil || req.Msg.Key() != req.Key || req.Msg.GetVersion() != req.Version {
			t.Fatalf("request %+v", req)
		}
		_ = req.Msg.AppendTo(nil)
	})
}
