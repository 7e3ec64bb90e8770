package io.walkstream;

import java.nio.charset.StandardCharsets;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.types.Row;

/**
 * The fields of a valid ratings record in the producer's compact form, or NULL for any other.
 *
 * <p>The compact form is what {@code event_to_json} writes: exactly
 * {@code {"user_id":U,"item_id":I,"rating":R,"event_time":T}} with ids of at most 18 digits
 * (below 2^63), a JSON number, and an event time of at most 12 digits, no leading zeros, no
 * spaces. A record in it is valid JSON of the right types; it is returned when its key and
 * values pass the {@link EventRules} too. Any other record goes to the Python validator, which
 * alone names reasons. One pass over the bytes, without a regular expression or string splits.
 */
public final class CompactEvent extends ScalarFunction {
    private static final byte[] USER = ascii("{\"user_id\":");
    private static final byte[] ITEM = ascii(",\"item_id\":");
    private static final byte[] RATING = ascii(",\"rating\":");
    private static final byte[] TIME = ascii(",\"event_time\":");
    private static final int ID_DIGITS = 18;
    private static final int TIME_DIGITS = 12;
    private static final long serialVersionUID = 1L;

    private final EventRules rules;

    public CompactEvent(EventRules rules) {
        this.rules = rules;
    }

    /** The fields of {@code record}, with Kafka key {@code key}, received at {@code receivedS}. */
    @DataTypeHint("ROW<user_id BIGINT, item_id BIGINT, rating DOUBLE, event_time BIGINT>")
    public Row eval(String key, byte[] record, Long receivedS) {
        Row event = read(record, rules.maxRecordBytes());
        if (event == null
                || receivedS == null
                || !rules.accepts(
                        key,
                        event.<Long>getFieldAs(0),
                        event.<Double>getFieldAs(2),
                        event.<Long>getFieldAs(3),
                        receivedS)) {
            return null;
        }
        return event;
    }

    /** The fields of a record in the compact form of at most {@code maxBytes}, or null. */
    static Row read(byte[] record, int maxBytes) {
        if (record == null || record.length > maxBytes) {
            return null;
        }
        int at = literal(record, 0, USER);
        int userEnd = integer(record, at, ID_DIGITS);
        at = literal(record, userEnd, ITEM);
        int itemEnd = integer(record, at, ID_DIGITS);
        at = literal(record, itemEnd, RATING);
        int ratingStart = at;
        int ratingEnd = number(record, at);
        at = literal(record, ratingEnd, TIME);
        int timeStart = at;
        int timeEnd = integer(record, at, TIME_DIGITS);
        if (timeEnd < 0 || timeEnd != record.length - 1 || record[timeEnd] != '}') {
            return null;
        }
        int userStart = USER.length;
        int itemStart = userEnd + ITEM.length;
        String rating =
                new String(record, ratingStart, ratingEnd - ratingStart, StandardCharsets.US_ASCII);
        return Row.of(
                value(record, userStart, userEnd),
                value(record, itemStart, itemEnd),
                Double.parseDouble(rating),
                value(record, timeStart, timeEnd));
    }

    private static byte[] ascii(String text) {
        return text.getBytes(StandardCharsets.US_ASCII);
    }

    /** The position after {@code text} at {@code at}, or -1 (also when {@code at} is -1). */
    private static int literal(byte[] record, int at, byte[] text) {
        if (at < 0 || record.length - at < text.length) {
            return -1;
        }
        for (int i = 0; i < text.length; i++) {
            if (record[at + i] != text[i]) {
                return -1;
            }
        }
        return at + text.length;
    }

    private static int digits(byte[] record, int at) {
        while (at < record.length && record[at] >= '0' && record[at] <= '9') {
            at++;
        }
        return at;
    }

    /** The end of 0 or of at most {@code maxDigits} digits without a leading zero, or -1. */
    private static int integer(byte[] record, int at, int maxDigits) {
        if (at < 0) {
            return -1;
        }
        int end = digits(record, at);
        int n = end - at;
        return n == 0 || n > maxDigits || (n > 1 && record[at] == '0') ? -1 : end;
    }

    /** The end of a JSON number, or -1. */
    private static int number(byte[] record, int at) {
        if (at < 0) {
            return -1;
        }
        if (at < record.length && record[at] == '-') {
            at++;
        }
        int end = digits(record, at);
        if (end == at || (end - at > 1 && record[at] == '0')) {
            return -1;
        }
        if (end < record.length && record[end] == '.') {
            int fraction = end + 1;
            end = digits(record, fraction);
            if (end == fraction) {
                return -1;
            }
        }
        if (end < record.length && (record[end] == 'e' || record[end] == 'E')) {
            int exponent = end + 1;
            if (exponent < record.length && (record[exponent] == '+' || record[exponent] == '-')) {
                exponent++;
            }
            end = digits(record, exponent);
            if (end == exponent) {
                return -1;
            }
        }
        return end;
    }

    private static long value(byte[] record, int start, int end) {
        long value = 0;
        for (int i = start; i < end; i++) {
            value = value * 10 + (record[i] - '0');
        }
        return value;
    }
}
