package main

// The agent: one loop goroutine owns every run and stream and reacts to events (server messages,
// stream ends, run output and ends, a 20 ms tick for batching, heartbeats, the lease and reconnects).

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "agent-jobs/agent-go/generated/agent/v1"
)

const (
	agentVersion        = "0.1.0-go"
	defaultBatchLines   = 500
	maxBatchBytes       = 1 << 20  // well under gRPC's 4 MiB
	batchesInFlight     = 4        // unacknowledged batches per run, as the reference agent
	patchChunkBytes     = 64 << 10 // PatchChunk.data, as the reference agent: what a server that stops reading still takes in
	patchInFlight       = 2 << 20  // patch bytes sent and not acknowledged, per run
	defaultCancelGrace  = 30 * time.Second
	stableStream        = 10 * time.Second
	shutdownDrain       = 5 * time.Second
	protocolErrorsLimit = 3
	signalDebounce      = 300 * time.Millisecond
)

type evKind int

const (
	evServer evKind = iota
	evStreamEnded
	evLine
	evStarted
	evEnded
)

type event struct {
	kind      evKind
	stream    *stream
	msg       *pb.ServerMessage
	err       error
	run       *run
	logStream pb.LogStream
	text      string
	at        time.Time
	result    *runResult
}

type run struct {
	key     string
	jobID   string
	attempt uint32
	asg     *pb.JobAssignment // nil for a run restored from disk (it has ended)
	ctl     *procControl
	folder  string

	started       bool
	startedAt     time.Time
	startedSentOn *stream
	stopAsked     bool
	result        *runResult
	forgotten     bool

	// Log lines not yet acknowledged: lines[i] has seq base+i.
	lines    []*pb.LogLine
	base     uint64
	lastSeq  uint64
	ackedSeq uint64
	sentSeq  uint64 // highest seq sent on sentOn
	sentOn   *stream
	spool    *spool

	// The patch (result.Change, bytes in the store's .patch file): patchAcked bytes are stored,
	// patchSent have been sent on patchSentOn.
	patchAcked  uint64
	patchSent   uint64
	patchSentOn *stream
	patchBroken *stream // the patch file could not be read while sending on this stream

	reportSentOn *stream // JobFinished / JobRejected sent on this stream
	rejectHb     uint64  // a JobRejected is confirmed by the ack of a later heartbeat on reportSentOn
}

func runKey(jobID string, attempt uint32) string { return fmt.Sprintf("%s/%d", jobID, attempt) }

func (r *run) cancelGrace() time.Duration {
	if g := r.asg.GetCancelGrace(); g != nil {
		return g.AsDuration()
	}
	return defaultCancelGrace
}

type agent struct {
	opts    *options
	agentID string
	conn    *grpc.ClientConn
	store   runStore
	events  chan event
	runs    map[string]*run

	cur, opening *stream
	streams      int
	failed       int
	reconnectAt  time.Time
	everWelcomed bool
	protoErrors  int

	heartbeatEvery time.Duration
	nextHeartbeat  time.Time
	lease          time.Duration
	leaseUntil     time.Time
	leaseExpired   bool
	batchLines     int
	maxPatchBytes  uint64 // Welcome.max_patch_bytes: 0, no patch is sent

	stopping      bool
	stoppingSince time.Time
	drainUntil    time.Time
	done          bool
	exitCode      int
}

func newAgent(opts *options, agentID string, conn *grpc.ClientConn) *agent {
	return &agent{opts: opts, agentID: agentID, conn: conn, store: runStore{dir: filepath.Join(opts.StateDir, "runs")},
		events: make(chan event, 4096), runs: map[string]*run{}, heartbeatEvery: opts.HeartbeatFallback, batchLines: defaultBatchLines}
}

// restore kills what a previous life of the agent left running, and takes back the runs that had
// ended but were not acknowledged, with their log lines, to report them.
func (a *agent) restore() {
	for _, rec := range a.store.list() {
		if rec.Pgid > 1 && groupBelongsToJob(rec.Pgid, rec.JobID) {
			if err := killGroup(rec.Pgid); err == nil {
				logWarn("killed processes left by a previous agent run", "jobId", rec.JobID, "pgid", rec.Pgid)
			}
		}
		if rec.Ended == nil {
			a.store.remove(rec.JobID, rec.Attempt)
			continue
		}
		lines, err := a.store.readSpool(rec.JobID, rec.Attempt)
		if err != nil || uint64(len(lines)) != rec.Ended.LastSeq {
			logWarn("cannot report a run from a previous agent process: its log lines are missing", "jobId", rec.JobID, "attempt", rec.Attempt)
			a.store.remove(rec.JobID, rec.Attempt)
			continue
		}
		if size := rec.Ended.Change.patchSize(); size > 0 {
			if info, err := os.Stat(a.store.patchFile(rec.JobID, rec.Attempt)); err != nil || uint64(info.Size()) != size {
				logWarn("cannot report a run from a previous agent process: its patch is missing", "jobId", rec.JobID, "attempt", rec.Attempt)
				a.store.remove(rec.JobID, rec.Attempt)
				continue
			}
		}
		res := *rec.Ended
		r := &run{key: runKey(rec.JobID, rec.Attempt), jobID: rec.JobID, attempt: rec.Attempt, ctl: &procControl{}, result: &res, base: 1, lastSeq: res.LastSeq}
		for _, l := range lines {
			r.lines = append(r.lines, &pb.LogLine{At: timestamppb.New(time.Unix(0, l.AtNano)), Stream: pb.LogStream(l.Stream), Text: l.Text})
		}
		a.runs[r.key] = r
		logInfo("reporting a run that ended before a restart", "jobId", r.jobID, "attempt", r.attempt, "lines", r.lastSeq)
	}
}

func killGroup(pgid int) error { return killSignal(-pgid) }

// loop runs until the agent stops; it returns the exit code.
func (a *agent) loop(signals <-chan os.Signal) int {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	a.connect()
	for !a.done {
		select {
		case ev := <-a.events:
			a.handle(ev)
		case <-tick.C:
			a.tick()
		case <-signals:
			a.onSignal()
		}
	}
	if a.cur != nil {
		a.cur.close(time.Second)
	}
	return a.exitCode
}

func (a *agent) handle(ev event) {
	switch ev.kind {
	case evServer:
		a.onServer(ev.stream, ev.msg)
	case evStreamEnded:
		a.onStreamEnded(ev.stream, ev.err)
	case evLine:
		r := ev.run
		if r.forgotten {
			return
		}
		a.addLine(r, ev.logStream, ev.text, ev.at)
		if r.lastSeq-r.sentSeq >= uint64(a.batchLines) {
			a.flushRun(r)
		}
	case evStarted:
		r := ev.run
		if r.forgotten {
			return
		}
		r.started, r.startedAt = true, ev.at
		a.sendStarted(r)
	case evEnded:
		a.onRunEnded(ev.run, ev.result)
	}
}

func (a *agent) addLine(r *run, stream pb.LogStream, text string, at time.Time) {
	r.lastSeq++
	r.lines = append(r.lines, &pb.LogLine{At: timestamppb.New(at), Stream: stream, Text: text})
	r.spool.append(spoolLine{Seq: r.lastSeq, AtNano: at.UnixNano(), Stream: int32(stream), Text: text})
}

func (a *agent) system(r *run, text string) {
	a.addLine(r, pb.LogStream_LOG_STREAM_SYSTEM, text, time.Now())
}

func (a *agent) onRunEnded(r *run, res *runResult) {
	if r.forgotten {
		a.cleanUp(r)
		return
	}
	res.LastSeq = r.lastSeq
	r.result = res
	if err := r.spool.close(); err != nil {
		logWarn("cannot write the run's log lines to disk", "jobId", r.jobID, "error", err)
	}
	r.spool = nil
	if err := a.store.write(runRecord{JobID: r.jobID, Attempt: r.attempt, Ended: res}); err != nil {
		logWarn("cannot write the run record", "jobId", r.jobID, "error", err)
	}
	if r.folder != "" {
		os.RemoveAll(r.folder)
	}
	verb := map[int32]string{1: "succeeded", 2: "failed", 3: "cancelled"}[res.Outcome]
	if res.GiveBack {
		verb = "stopped to give back"
	}
	logInfo("run ended: "+verb, "jobId", r.jobID, "attempt", r.attempt, "lines", r.lastSeq, "reason", res.Reason)
	a.flushRun(r)
}

// forget drops a run for good: no more messages about it, its files go.
func (a *agent) forget(r *run) {
	if r.forgotten {
		return
	}
	r.forgotten = true
	delete(a.runs, r.key)
	r.lines = nil
	if r.result != nil {
		a.cleanUp(r)
	}
}

func (a *agent) cleanUp(r *run) {
	if r.spool != nil {
		r.spool.close()
		r.spool = nil
	}
	a.store.remove(r.jobID, r.attempt)
	if r.folder != "" {
		os.RemoveAll(r.folder)
	}
}

// drop kills a run that is no longer this agent's, at once, and forgets it.
func (a *agent) drop(r *run, why string) {
	logInfo("dropping run: "+why, "jobId", r.jobID, "attempt", r.attempt)
	r.ctl.stop(stopDrop, why, 0)
	a.forget(r)
}

// ---- server messages ----

func (a *agent) onServer(s *stream, msg *pb.ServerMessage) {
	switch p := msg.Payload.(type) {
	case *pb.ServerMessage_Welcome:
		a.onWelcome(s, p.Welcome)
	case *pb.ServerMessage_Assignment:
		a.onAssignment(s, p.Assignment)
	case *pb.ServerMessage_Cancel:
		a.onCancel(p.Cancel)
	case *pb.ServerMessage_LogAck:
		if r := a.runs[runKey(p.LogAck.GetJobId(), p.LogAck.GetAttempt())]; r != nil {
			a.onLogAck(r, p.LogAck.GetAckedSeq())
		}
	case *pb.ServerMessage_GoAway:
		if s == a.cur && !s.goneAway {
			s.goneAway = true
			delay := goAwayDelay(p.GoAway.GetReconnectAfter().AsDuration(), randomFloat)
			logInfo("server is draining; moving to a new stream", "reason", p.GoAway.GetReason(), "in", delay)
			a.reconnectAt = time.Now().Add(delay)
		}
	case *pb.ServerMessage_PatchAck:
		if r := a.runs[runKey(p.PatchAck.GetJobId(), p.PatchAck.GetAttempt())]; r != nil {
			a.onPatchAck(r, p.PatchAck.GetStoredBytes())
		}
	case *pb.ServerMessage_Notice:
		a.onNotice(p.Notice)
	case *pb.ServerMessage_FinishedAck:
		r := a.runs[runKey(p.FinishedAck.GetJobId(), p.FinishedAck.GetAttempt())]
		if r != nil && r.result != nil && !r.result.GiveBack {
			logDebug("run acknowledged", "jobId", r.jobID, "attempt", r.attempt)
			a.forget(r)
		}
	case *pb.ServerMessage_HeartbeatAck:
		a.onHeartbeatAck(s, p.HeartbeatAck.GetSeq())
	case *pb.ServerMessage_Drop:
		if r := a.runs[runKey(p.Drop.GetJobId(), p.Drop.GetAttempt())]; r != nil {
			a.drop(r, "server: "+p.Drop.GetReason())
		}
	default:
		logDebug("ignoring a server message this agent does not know")
	}
}

func (a *agent) onWelcome(s *stream, w *pb.Welcome) {
	if s != a.opening || s.welcomed {
		return
	}
	now := time.Now()
	s.welcomed = true
	a.everWelcomed, a.protoErrors = true, 0
	a.heartbeatEvery = a.opts.HeartbeatFallback
	if d := w.GetHeartbeatInterval().AsDuration(); w.GetHeartbeatInterval() != nil && d > 0 {
		a.heartbeatEvery = d
	}
	a.lease = 0
	if w.GetLeaseDuration() != nil {
		a.lease = w.GetLeaseDuration().AsDuration()
		a.renewLease(s.helloSentAt)
	}
	a.batchLines = defaultBatchLines
	if n := int(w.GetMaxLogBatchLines()); n > 0 {
		a.batchLines = n
	}
	a.maxPatchBytes = w.GetMaxPatchBytes()
	old := a.cur
	a.cur, a.opening = s, nil
	a.reconnectAt = time.Time{}
	if old != nil {
		old.replaced = true
		go old.close(2 * time.Second)
	}
	logInfo("welcomed", "session", w.GetSessionId(), "replica", w.GetReplica(), "heartbeat", a.heartbeatEvery, "lease", a.lease, "runs", len(a.runs))
	gone := map[string]bool{}
	for _, id := range w.GetCancelJobIds() {
		gone[id] = true
	}
	for _, r := range a.sortedRuns() {
		if gone[r.jobID] {
			a.drop(r, "no longer this agent's (Welcome.cancel_job_ids)")
			continue
		}
		// What the old stream may have lost goes again: JobStarted, unacknowledged lines and patch
		// bytes (from the last acks, as flushRun starts over on a new stream), the report.
		r.startedSentOn, r.reportSentOn = nil, nil
		if r.started && r.result == nil {
			a.sendStarted(r)
		}
	}
	a.nextHeartbeat = now.Add(a.heartbeatEvery)
	a.flushAll()
}

func (a *agent) renewLease(sentAt time.Time) {
	if a.lease <= 0 || sentAt.IsZero() {
		return
	}
	if until := sentAt.Add(a.lease); until.After(a.leaseUntil) {
		a.leaseUntil = until
	}
	if a.leaseExpired && time.Now().Before(a.leaseUntil) {
		a.leaseExpired = false
	}
}

func (a *agent) onAssignment(s *stream, asg *pb.JobAssignment) {
	key := runKey(asg.GetJobId(), asg.GetAttempt())
	if a.runs[key] != nil {
		return // a repeat
	}
	reject := func(reason string) {
		logInfo("rejecting a job", "jobId", asg.GetJobId(), "attempt", asg.GetAttempt(), "reason", reason)
		s.send(&pb.AgentMessage{Payload: &pb.AgentMessage_Rejected{Rejected: &pb.JobRejected{JobId: asg.GetJobId(), Attempt: asg.GetAttempt(), Reason: reason}}})
	}
	if a.stopping {
		reject("agent is shutting down")
		return
	}
	active := 0
	for _, r := range a.runs {
		if r.result == nil {
			active++
		}
	}
	if active >= a.opts.Capacity {
		reject("at capacity")
		return
	}
	s.send(&pb.AgentMessage{Payload: &pb.AgentMessage_Accepted{Accepted: &pb.JobAccepted{JobId: asg.GetJobId(), Attempt: asg.GetAttempt()}}})
	r := &run{key: key, jobID: asg.GetJobId(), attempt: asg.GetAttempt(), asg: asg, ctl: &procControl{}, base: 1}
	if name := runFolderName(r.jobID, r.attempt); name != "" {
		r.folder = filepath.Join(a.opts.WorkDir, name)
	}
	sp, err := a.store.openSpool(r.jobID, r.attempt)
	if err != nil {
		logWarn("cannot keep the run's log lines on disk", "jobId", r.jobID, "error", err)
	}
	r.spool = sp
	a.store.write(runRecord{JobID: r.jobID, Attempt: r.attempt, Folder: r.folder})
	a.runs[key] = r
	logInfo("job accepted", "jobId", r.jobID, "attempt", r.attempt, "repo", asg.GetRepository().GetName())
	x := &runner{r: r, asg: asg, opts: a.opts, folder: r.folder, store: a.store, events: a.events}
	go x.run()
}

func (a *agent) onCancel(c *pb.CancelJob) {
	r := a.runs[runKey(c.GetJobId(), c.GetAttempt())]
	if r == nil || r.result != nil {
		return
	}
	grace := r.cancelGrace()
	if c.GetGrace() != nil {
		grace = c.GetGrace().AsDuration()
	}
	reason := c.GetReason()
	if reason == "" {
		reason = "cancelled"
	}
	if r.stopAsked {
		if grace <= 0 {
			r.ctl.stop(stopCancel, reason, 0)
		}
		return
	}
	r.stopAsked = true
	a.system(r, fmt.Sprintf("cancel requested: %s; sending SIGTERM, then SIGKILL after %s", reason, formatDuration(grace)))
	logInfo("cancel requested", "jobId", r.jobID, "attempt", r.attempt, "reason", reason)
	r.ctl.stop(stopCancel, reason, grace)
}

func (a *agent) onLogAck(r *run, acked uint64) {
	if acked <= r.ackedSeq {
		return
	}
	if acked > r.lastSeq {
		acked = r.lastSeq
	}
	drop := acked - r.ackedSeq
	if drop > uint64(len(r.lines)) {
		drop = uint64(len(r.lines))
	}
	for i := uint64(0); i < drop; i++ {
		r.lines[i] = nil
	}
	r.lines = r.lines[drop:]
	r.base += drop
	r.ackedSeq = acked
	if r.sentSeq < acked {
		r.sentSeq = acked
	}
	a.flushRun(r)
}

func (a *agent) onPatchAck(r *run, stored uint64) {
	if stored <= r.patchAcked {
		return
	}
	if size := r.result.patchSize(); stored > size {
		stored = size
	}
	r.patchAcked = stored
	if r.patchSent < stored {
		r.patchSent = stored
	}
	a.flushRun(r)
}

func (a *agent) onNotice(n *pb.Notice) {
	key := runKey(n.GetJobId(), n.GetAttempt())
	r := a.runs[key]
	switch n.GetCode() {
	case pb.NoticeCode_NOTICE_CODE_UNKNOWN_JOB:
		if r == nil && n.GetAttempt() == 0 {
			for _, x := range a.runs {
				if x.jobID == n.GetJobId() {
					r = x
				}
			}
		}
		if r != nil {
			a.drop(r, "server does not know this run: "+n.GetDetail())
		}
	case pb.NoticeCode_NOTICE_CODE_PATCH_GAP:
		// The PatchAck saying what is stored came just before; a JobFinished already sent waits for
		// the missing bytes, and is acknowledged once they arrive.
		logWarn("patch gap: resending from the last acknowledged byte", "jobId", n.GetJobId(), "detail", n.GetDetail())
		if r != nil {
			r.patchSent = r.patchAcked
			a.flushRun(r)
		}
	case pb.NoticeCode_NOTICE_CODE_LOG_SEQ_GAP:
		logWarn("log gap: resending from the last acknowledged line", "jobId", n.GetJobId(), "detail", n.GetDetail())
		if r != nil {
			r.sentSeq = r.ackedSeq
			a.flushRun(r)
		}
	default:
		logWarn("server ignored a message", "code", n.GetCode().String(), "jobId", n.GetJobId(), "attempt", n.GetAttempt(), "detail", n.GetDetail())
	}
}

func (a *agent) onHeartbeatAck(s *stream, seq uint64) {
	if sentAt, ok := s.hbSent[seq]; ok {
		a.renewLease(sentAt)
	}
	for k := range s.hbSent {
		if k <= seq {
			delete(s.hbSent, k)
		}
	}
	for _, r := range a.sortedRuns() {
		if r.result != nil && r.result.GiveBack && r.reportSentOn == s && seq > r.rejectHb {
			logDebug("give-back confirmed", "jobId", r.jobID)
			a.forget(r)
		}
	}
}

// ---- sending ----

func (a *agent) sendStarted(r *run) {
	if a.cur == nil || r.startedSentOn == a.cur {
		return
	}
	r.startedSentOn = a.cur
	a.cur.send(&pb.AgentMessage{Payload: &pb.AgentMessage_Started{Started: &pb.JobStarted{JobId: r.jobID, Attempt: r.attempt, StartedAt: timestamppb.New(r.startedAt)}}})
}

func (a *agent) flushAll() {
	for _, r := range a.sortedRuns() {
		a.flushRun(r)
	}
}

// flushRun sends the run's unsent lines (at most batchesInFlight batches beyond the last ack), then
// its report once every line has been sent on this stream.
func (a *agent) flushRun(r *run) {
	s := a.cur
	if s == nil || r.forgotten {
		return
	}
	if r.sentOn != s {
		r.sentOn, r.sentSeq = s, r.ackedSeq
	}
	window := uint64(batchesInFlight * a.batchLines)
	for r.sentSeq < r.lastSeq && r.sentSeq-r.ackedSeq < window {
		first := r.sentSeq + 1
		var batch []*pb.LogLine
		size := 0
		for seq := first; seq <= r.lastSeq && len(batch) < a.batchLines; seq++ {
			line := r.lines[seq-r.base]
			if len(batch) > 0 && size+len(line.Text)+32 > maxBatchBytes {
				break
			}
			size += len(line.Text) + 32
			batch = append(batch, line)
		}
		s.send(&pb.AgentMessage{Payload: &pb.AgentMessage_LogBatch{LogBatch: &pb.LogBatch{JobId: r.jobID, Attempt: r.attempt, FirstSeq: first, Lines: batch}}})
		r.sentSeq += uint64(len(batch))
	}
	if r.result == nil || r.sentSeq != r.lastSeq {
		return
	}
	// After the last line, the patch; JobFinished once every byte of it has been sent.
	if size := a.patchToSend(r); size > 0 && !a.sendPatch(r, s, size) {
		return
	}
	if r.reportSentOn != s {
		r.reportSentOn = s
		res := r.result
		if res.GiveBack {
			s.send(&pb.AgentMessage{Payload: &pb.AgentMessage_Rejected{Rejected: &pb.JobRejected{JobId: r.jobID, Attempt: r.attempt, Reason: res.Reason}}})
			r.rejectHb = s.hbSeq
			if a.stopping {
				a.sendHeartbeat(s)
			}
			return
		}
		finished := &pb.JobFinished{JobId: r.jobID, Attempt: r.attempt, Outcome: pb.JobOutcome(res.Outcome), ExitCode: res.ExitCode,
			FailureReason: res.Reason, FinishedAt: timestamppb.New(res.FinishedAt), LastSeq: res.LastSeq}
		if res.Change != nil && res.Outcome == int32(pb.JobOutcome_JOB_OUTCOME_SUCCEEDED) {
			finished.Change = res.Change.RunChange
		}
		s.send(&pb.AgentMessage{Payload: &pb.AgentMessage_Finished{Finished: finished}})
	}
}

// patchToSend is how many bytes of the run's patch go to the server: none when the run has no
// patch, or when this server stores none (max_patch_bytes 0) or not one this large.
func (a *agent) patchToSend(r *run) uint64 {
	size := r.result.patchSize()
	if r.result.GiveBack || r.result.Outcome != int32(pb.JobOutcome_JOB_OUTCOME_SUCCEEDED) || a.maxPatchBytes == 0 || size > a.maxPatchBytes {
		return 0
	}
	return size
}

// sendPatch sends the run's patch bytes after patchSent, in chunks of at most patchChunkBytes,
// keeping at most patchInFlight bytes unacknowledged. It says whether every byte has been sent on s.
func (a *agent) sendPatch(r *run, s *stream, size uint64) bool {
	if r.patchSentOn != s {
		r.patchSentOn, r.patchSent = s, r.patchAcked
	}
	if r.patchBroken == s {
		return false
	}
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for r.patchSent < size {
		n := min(uint64(patchChunkBytes), size-r.patchSent)
		if r.patchSent-r.patchAcked+n > patchInFlight {
			return false
		}
		var err error
		if f == nil {
			f, err = os.Open(a.store.patchFile(r.jobID, r.attempt))
		}
		data := make([]byte, n)
		if err == nil {
			_, err = f.ReadAt(data, int64(r.patchSent))
		}
		if err != nil {
			logError("cannot read the run's patch; its JobFinished waits for the next stream", "jobId", r.jobID, "attempt", r.attempt, "error", err)
			r.patchBroken = s
			return false
		}
		s.send(&pb.AgentMessage{Payload: &pb.AgentMessage_PatchChunk{PatchChunk: &pb.PatchChunk{JobId: r.jobID, Attempt: r.attempt, Offset: r.patchSent, Data: data}}})
		r.patchSent += n
	}
	return true
}

func (a *agent) heldRuns(s *stream) []*pb.RunningJob {
	var out []*pb.RunningJob
	for _, r := range a.sortedRuns() {
		if s != nil && r.result != nil && r.result.GiveBack && r.reportSentOn == s {
			continue // given back on this stream
		}
		out = append(out, &pb.RunningJob{JobId: r.jobID, Attempt: r.attempt, LastSeq: r.lastSeq})
	}
	return out
}

func (a *agent) sendHeartbeat(s *stream) {
	s.hbSeq++
	s.hbSent[s.hbSeq] = time.Now()
	s.send(&pb.AgentMessage{Payload: &pb.AgentMessage_Heartbeat{Heartbeat: &pb.Heartbeat{Seq: s.hbSeq, RunningJobs: a.heldRuns(s)}}})
}

// ---- connection ----

func (a *agent) connect() {
	a.streams++
	s, err := openStream(a.conn, a.opts.Token, a.streams, a.events)
	if err != nil {
		logWarn("cannot open a stream", "error", err)
		if a.notSpeakingGRPC(nil, status.Convert(err)) {
			return
		}
		a.scheduleReconnect()
		return
	}
	capacity := uint32(a.opts.Capacity)
	if a.stopping {
		capacity = 0
	}
	s.helloSentAt = time.Now()
	s.send(&pb.AgentMessage{Payload: &pb.AgentMessage_Hello{Hello: &pb.Hello{AgentId: a.agentID, Name: a.opts.Name, Version: agentVersion,
		Labels: a.opts.Labels, Capacity: capacity, RunningJobs: a.heldRuns(nil)}}})
	a.opening = s
	logDebug("stream opened", "stream", s.id)
}

func (a *agent) scheduleReconnect() {
	delay := fullJitterDelay(a.failed, backoffFor(a.lease), randomFloat)
	a.failed++
	a.reconnectAt = time.Now().Add(delay)
	logInfo("reconnecting", "in", delay.Round(time.Millisecond))
}

var notGRPC = regexp.MustCompile(`(?i)protocol error|server preface|malformed header|unexpected HTTP status|frame too large|http2`)

func (a *agent) onStreamEnded(s *stream, err error) {
	st := status.Convert(err)
	if s == a.opening {
		a.opening = nil
	}
	wasCurrent := s == a.cur
	if wasCurrent {
		a.cur = nil
	}
	s.abort()
	if s.replaced || a.done {
		return
	}
	if s.welcomed && time.Since(s.openedAt) >= stableStream {
		a.failed = 0
	}
	logWarn("stream ended", "stream", s.id, "code", st.Code().String(), "message", st.Message())
	switch st.Code() {
	case codes.Unauthenticated, codes.InvalidArgument, codes.PermissionDenied:
		logError("the server refused this agent; not retrying", "code", st.Code().String(), "message", st.Message())
		fmt.Fprintf(os.Stderr, "agent-jobs-agent-go: the server refused this agent: %s: %s\n", st.Code().String(), st.Message())
		a.exit(1)
		return
	}
	if a.notSpeakingGRPC(s, st) {
		return
	}
	if a.cur == nil && a.opening == nil {
		a.scheduleReconnect()
	} else if a.opening == nil && a.cur != nil && a.cur.goneAway {
		a.scheduleReconnect()
	}
}

// notSpeakingGRPC counts streams in a row that failed in an HTTP/2 or gRPC protocol error before any
// Welcome: a server that answers but does not speak gRPC (the HTTP port, say) will never welcome the
// agent, so after a few it says so and exits 1 rather than retry forever.
func (a *agent) notSpeakingGRPC(s *stream, st *status.Status) bool {
	if a.everWelcomed || (s != nil && s.welcomed) || !(notGRPC.MatchString(st.Message()) || st.Code() == codes.Unimplemented || st.Code() == codes.Internal) {
		a.protoErrors = 0
		return false
	}
	a.protoErrors++
	if a.protoErrors < protocolErrorsLimit {
		return false
	}
	logError("not a gRPC endpoint; not retrying", "server", a.opts.Server.Address)
	fmt.Fprintf(os.Stderr, "agent-jobs-agent-go: %s does not speak gRPC (%s): is it the control plane's gRPC port (GRPC_PORT, 50051 by default) rather than its HTTP port?\n", a.opts.Server.Address, st.Message())
	a.exit(1)
	return true
}

func (a *agent) exit(code int) {
	for _, r := range a.runs {
		if r.result == nil {
			r.ctl.stop(stopGiveBack, "agent exiting", 0)
		}
	}
	a.done, a.exitCode = true, code
}

// ---- time ----

func (a *agent) tick() {
	now := time.Now()
	if a.lease > 0 && !a.leaseUntil.IsZero() && now.After(a.leaseUntil) && !a.leaseExpired {
		a.leaseExpired = true
		logWarn("lease ran out: stopping unfinished runs to give them back", "lease", a.lease)
		for _, r := range a.sortedRuns() {
			if r.result == nil {
				a.system(r, fmt.Sprintf("lease ran out (no answer from the server for %s): stopping the run to give the job back; sending SIGTERM, then SIGKILL after %s", formatDuration(a.lease), formatDuration(r.cancelGrace())))
				r.stopAsked = true
				r.ctl.stop(stopGiveBack, "lease ran out", r.cancelGrace())
			}
		}
	}
	if a.cur != nil && a.cur.welcomed && !a.nextHeartbeat.IsZero() && !now.Before(a.nextHeartbeat) {
		a.sendHeartbeat(a.cur)
		a.nextHeartbeat = now.Add(a.heartbeatEvery)
	}
	if !a.reconnectAt.IsZero() && !now.Before(a.reconnectAt) && a.opening == nil {
		a.reconnectAt = time.Time{}
		a.connect()
	}
	a.flushAll()
	if a.stopping {
		ended := true
		for _, r := range a.runs {
			if r.result == nil {
				ended = false
			}
		}
		if ended && a.drainUntil.IsZero() {
			a.drainUntil = now.Add(shutdownDrain)
		}
		if ended && (len(a.runs) == 0 || now.After(a.drainUntil)) {
			if len(a.runs) > 0 {
				logWarn("stopping with runs the server has not acknowledged; they are reported at the next start", "runs", len(a.runs))
			}
			a.done = true
		}
	}
}

func (a *agent) onSignal() {
	if a.stopping && time.Since(a.stoppingSince) < signalDebounce {
		return // the same signal twice: to the process and to its group (timeout(1), a shell's job control)
	}
	if a.stopping {
		logWarn("second signal: killing every run now")
		for _, r := range a.runs {
			r.ctl.killNow()
		}
		a.done, a.exitCode = true, 130
		return
	}
	a.stopping, a.stoppingSince = true, time.Now()
	logInfo("stopping: giving running jobs back to the server")
	for _, r := range a.sortedRuns() {
		if r.result == nil {
			a.system(r, fmt.Sprintf("agent shutting down: stopping the run to give the job back; sending SIGTERM, then SIGKILL after %s", formatDuration(r.cancelGrace())))
			r.stopAsked = true
			r.ctl.stop(stopGiveBack, "agent shutting down", r.cancelGrace())
		}
	}
}

func (a *agent) sortedRuns() []*run {
	out := make([]*run, 0, len(a.runs))
	for _, r := range a.runs {
		out = append(out, r)
	}
	// Stable order (by key) keeps batches and heartbeats deterministic.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && strings.Compare(out[j-1].key, out[j].key) > 0; j-- {
			out[j-1], out[j] = out[j], out[j-1]
		}
	}
	return out
}

var _ = durationpb.New
var _ = errors.New
