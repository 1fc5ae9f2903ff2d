package sluice

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/api"
)

// Fleet implements api.Backend: every member of every handler's consumer
// group, grouped by the node it names in its member data, plus this node.
func (a *App) Fleet(ctx context.Context) (api.Fleet, error) {
	if err := a.notReady(); err != nil {
		return api.Fleet{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out := api.Fleet{Node: a.nodeID, Nodes: []api.FleetNode{}, Groups: []api.FleetGroup{}}
	nodes := map[string]*api.FleetNode{a.nodeID: {ID: a.nodeID, API: a.httpAddr, Version: Version, Handlers: []api.FleetHandler{}}}
	for _, e := range a.reg.List() {
		group := e.Spec.Group()
		fg := api.FleetGroup{Handler: e.Spec.Name, Group: group, State: "unknown"}
		state, members, err := a.tc.GroupMembers(ctx, group)
		if err != nil {
			fg.Error = err.Error()
			out.Groups = append(out.Groups, fg)
			continue
		}
		fg.State, fg.Members = state, len(members)
		out.Groups = append(out.Groups, fg)
		for _, m := range members {
			var md api.MemberData
			if json.Unmarshal(m.UserData, &md) != nil || md.Node == "" {
				md.Node = m.ClientID // a member that is not a Sluice node
			}
			n, ok := nodes[md.Node]
			if !ok {
				n = &api.FleetNode{ID: md.Node, API: md.API, Version: md.Version, Handlers: []api.FleetHandler{}}
				nodes[md.Node] = n
			}
			n.Host = m.ClientHost
			fh := api.FleetHandler{Name: e.Spec.Name, Partitions: []string{}}
			topics := make([]string, 0, len(m.Assigned))
			for t := range m.Assigned {
				topics = append(topics, t)
			}
			sort.Strings(topics)
			for _, t := range topics {
				ps := append([]int(nil), m.Assigned[t]...)
				sort.Ints(ps)
				for _, p := range ps {
					fh.Partitions = append(fh.Partitions, t+"/"+strconv.Itoa(p))
				}
			}
			n.Handlers = append(n.Handlers, fh)
		}
	}
	for _, n := range nodes {
		out.Nodes = append(out.Nodes, *n)
	}
	sort.Slice(out.Nodes, func(i, j int) bool { return out.Nodes[i].ID < out.Nodes[j].ID })
	return out, nil
}
