package broker

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/pubg1/pubg1/coordinator"
	"github.com/pubg1/pubg1/kproto"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Group administration: DescribeGroups, ListGroups, DeleteGroups.

// allGroupOperations is the authorized-operations bit set of a group when
// there is no authorizer: READ, DELETE, DESCRIBE.
const allGroupOperations = 1<<3 | 1<<6 | 1<<8

// fanOut runs one asynchronous call per item and calls respond after the
// last one finished.
func fanOut(n int, call func(i int, done func()), respond func()) {
	var pending atomic.Int32
	pending.Store(int32(n) + 1)
	done := func() {
		if pending.Add(-1) == 0 {
			respond()
		}
	}
	for i := range n {
		call(i, done)
	}
	done()
}

func (b *Broker) describeGroupsAPI() kproto.API {
	return kproto.API{Key: kmsg.DescribeGroups.Int16(), MinVersion: 0, MaxVersion: 6, Handle: b.describeGroups}
}

func (b *Broker) describeGroups(_ context.Context, req *kproto.Request, respond func(kmsg.Response)) {
	r := req.Msg.(*kmsg.DescribeGroupsRequest)
	resp := r.ResponseKind().(*kmsg.DescribeGroupsResponse)
	resp.Groups = make([]kmsg.DescribeGroupsResponseGroup, len(r.Groups))
	fanOut(len(r.Groups), func(i int, done func()) {
		sg := &resp.Groups[i]
		sg.Default()
		sg.Group = r.Groups[i]
		b.groups.DescribeGroup(r.Groups[i], func(d coordinator.GroupDescription, err error) {
			defer done()
			if errors.Is(err, coordinator.ErrGroupIDNotFound) {
				if r.Version < 6 {
					// Before v6 a group that does not exist is Dead.
					sg.State = "Dead"
					return
				}
				err = fmt.Errorf("%w: group %s not found", err, r.Groups[i])
			}
			if err != nil {
				sg.ErrorCode = errorCode(err)
				if r.Version >= 6 {
					sg.ErrorMessage = errorMessage(err)
				}
				return
			}
			sg.State, sg.ProtocolType, sg.Protocol = d.State, d.ProtocolType, d.Protocol
			if r.IncludeAuthorizedOperations {
				sg.AuthorizedOperations = allGroupOperations
			}
			for _, m := range d.Members {
				rm := kmsg.NewDescribeGroupsResponseGroupMember()
				rm.MemberID, rm.InstanceID, rm.ClientID, rm.ClientHost = m.MemberID, m.InstanceID, m.ClientID, m.ClientHost
				rm.ProtocolMetadata, rm.MemberAssignment = m.Metadata, m.Assignment
				sg.Members = append(sg.Members, rm)
			}
		})
	}, func() { respond(resp) })
}

func (b *Broker) listGroupsAPI() kproto.API {
	return kproto.API{Key: kmsg.ListGroups.Int16(), MinVersion: 0, MaxVersion: 5, Handle: handle(b.listGroups)}
}

func (b *Broker) listGroups(_ context.Context, _ *kproto.Request, r *kmsg.ListGroupsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.ListGroupsResponse)
	groups, err := b.groups.ListGroups(r.StatesFilter, r.TypesFilter)
	if err != nil {
		resp.ErrorCode = errorCode(err)
		return resp
	}
	for _, g := range groups {
		rg := kmsg.NewListGroupsResponseGroup()
		rg.Group, rg.ProtocolType, rg.GroupState, rg.GroupType = g.Group, g.ProtocolType, g.State, coordinator.GroupType
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

func (b *Broker) deleteGroupsAPI() kproto.API {
	return kproto.API{Key: kmsg.DeleteGroups.Int16(), MinVersion: 0, MaxVersion: 3, Handle: b.deleteGroups}
}

func (b *Broker) deleteGroups(_ context.Context, req *kproto.Request, respond func(kmsg.Response)) {
	r := req.Msg.(*kmsg.DeleteGroupsRequest)
	resp := r.ResponseKind().(*kmsg.DeleteGroupsResponse)
	resp.Groups = make([]kmsg.DeleteGroupsResponseGroup, len(r.Groups))
	fanOut(len(r.Groups), func(i int, done func()) {
		sg := &resp.Groups[i]
		sg.Default()
		sg.Group = r.Groups[i]
		b.groups.DeleteGroup(r.Groups[i], func(err error) {
			sg.ErrorCode = errorCode(err)
			if r.Version >= 3 {
				sg.ErrorMessage = errorMessage(err)
			}
			done()
		})
	}, func() { respond(resp) })
}
