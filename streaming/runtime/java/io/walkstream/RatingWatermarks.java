package io.walkstream;

import org.apache.flink.api.common.eventtime.TimestampAssigner;
import org.apache.flink.api.common.eventtime.TimestampAssignerSupplier;
import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkGeneratorSupplier;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.types.Row;
import org.apache.flink.util.clock.RelativeClock;

/**
 * Event time of the ratings source, per Kafka partition: only accepted records move it, and a
 * partition that is catching up is never taken for an idle one.
 *
 * <p>A record's timestamp is its accepted event time ({@link AcceptedEventTime}), else 0, which
 * moves nothing. A partition's watermark trails its newest accepted event time by the
 * out-of-orderness bound. A partition without records stops holding the watermark back (is
 * idle) after {@code idleTimeoutMs} if its last record was read within that time of reaching the
 * broker (it was caught up, so silence means no new records), but only after {@code
 * behindIdleTimeoutMs} if it was read later than that: the partition was catching up, and a
 * pause in its records is a slow fetch, not the end of them; taken for idleness, it would let
 * the other partitions' watermark pass its unread events, which would then be late. Silence is
 * measured on the source's input-activity clock, which stops while the source is backpressured
 * or paused. A timeout of 0 turns idleness off (a bounded replay, whose partitions end).
 */
public final class RatingWatermarks implements WatermarkStrategy<Row> {
    private static final long serialVersionUID = 1L;
    private static final long MS = 1000L;

    private final AcceptedEventTime acceptedTime;
    private final long outOfOrdernessMs;
    private final long idleTimeoutMs;
    private final long behindIdleTimeoutMs;

    public RatingWatermarks(
            EventRules rules, long outOfOrdernessMs, long idleTimeoutMs,
            long behindIdleTimeoutMs) {
        this.acceptedTime = new AcceptedEventTime(rules);
        this.outOfOrdernessMs = outOfOrdernessMs;
        this.idleTimeoutMs = idleTimeoutMs;
        this.behindIdleTimeoutMs = behindIdleTimeoutMs;
    }

    @Override
    public TimestampAssigner<Row> createTimestampAssigner(
            TimestampAssignerSupplier.Context context) {
        return (row, previous) -> {
            Long seconds = acceptedTime.read(
                    row.getFieldAs(0), row.getFieldAs(1), row.<Long>getFieldAs(4));
            return seconds == null ? 0L : seconds * MS;
        };
    }

    @Override
    public WatermarkGenerator<Row> createWatermarkGenerator(
            WatermarkGeneratorSupplier.Context context) {
        return new Generator(context.getInputActivityClock());
    }

    /** One partition's watermark and idleness. */
    public final class Generator implements WatermarkGenerator<Row> {
        private final RelativeClock clock;
        private long newest = Long.MIN_VALUE;
        private long lastRecordAt;
        private boolean caughtUp = true;
        private boolean idle;

        Generator(RelativeClock clock) {
            this.clock = clock;
            this.lastRecordAt = clock.relativeTimeMillis();
        }

        @Override
        public void onEvent(Row row, long timestamp, WatermarkOutput output) {
            lastRecordAt = clock.relativeTimeMillis();
            long lagMs = System.currentTimeMillis() - row.<Long>getFieldAs(4) * MS;
            // the broker's time has whole seconds: a second more is still caught up
            caughtUp = lagMs <= idleTimeoutMs + MS;
            newest = Math.max(newest, timestamp);
            idle = false;
        }

        @Override
        public void onPeriodicEmit(WatermarkOutput output) {
            long timeout = caughtUp ? idleTimeoutMs : behindIdleTimeoutMs;
            if (timeout > 0 && clock.relativeTimeMillis() - lastRecordAt >= timeout) {
                if (!idle) {
                    output.markIdle();
                    idle = true;
                }
                return;
            }
            if (newest != Long.MIN_VALUE) {
                output.emitWatermark(new Watermark(newest - outOfOrdernessMs));
            }
        }
    }
}
