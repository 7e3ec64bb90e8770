package io.walkstream;

import java.io.Serializable;

/**
 * What a valid rating event is: the Python validator's rules ({@code streaming.core.events}),
 * for the job's Java functions, which accept a record only where that validator would.
 */
public final class EventRules implements Serializable {
    private static final long serialVersionUID = 1L;

    private final double minRating;
    private final double maxRating;
    private final long maxEventTime;
    private final int maxRecordBytes;
    private final long maxAheadS;

    public EventRules(
            double minRating, double maxRating, long maxEventTime, int maxRecordBytes,
            long maxAheadS) {
        this.minRating = minRating;
        this.maxRating = maxRating;
        this.maxEventTime = maxEventTime;
        this.maxRecordBytes = maxRecordBytes;
        this.maxAheadS = maxAheadS;
    }

    public int maxRecordBytes() {
        return maxRecordBytes;
    }

    /**
     * Whether an event with these fields, read from a record with this Kafka key and received
     * by the broker at {@code receivedS} (whole seconds), is valid. Ids are known to be in
     * 0..2^63-1.
     */
    public boolean accepts(
            String key, long user, double rating, long eventTime, long receivedS) {
        return key != null
                && key.equals(Long.toString(user))
                && Double.isFinite(rating)
                && minRating <= rating
                && rating <= maxRating
                && 0 <= eventTime
                && eventTime <= maxEventTime
                && eventTime <= receivedS + maxAheadS;
    }
}
