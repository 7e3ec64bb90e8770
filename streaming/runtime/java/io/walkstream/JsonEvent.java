package io.walkstream;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

/**
 * A strict reader of a rating event in any JSON form: the four fields of a JSON object, or null.
 *
 * <p>It accepts a subset of what Python's {@code json.loads} accepts and reads it to the same
 * values, so a record it reads is one the Python validator reads alike: UTF-8 only; no NaN or
 * Infinity; no duplicate of the four fields; no escaped object key (an escape could spell one
 * of them); at most {@link #MAX_DEPTH} levels of nesting and {@link #MAX_NUMBER_CHARS}
 * characters per number. Anything else is null, and the Python validator judges the record.
 */
final class JsonEvent {
    static final int MAX_DEPTH = 64;
    static final int MAX_NUMBER_CHARS = 1000;
    private static final String[] FIELDS = {"user_id", "item_id", "rating", "event_time"};
    private static final int USER = 0;
    private static final int ITEM = 1;
    private static final int RATING = 2;
    private static final int TIME = 3;

    final long userId;
    final long itemId;
    final double rating;
    final long eventTime;

    private JsonEvent(long userId, long itemId, double rating, long eventTime) {
        this.userId = userId;
        this.itemId = itemId;
        this.rating = rating;
        this.eventTime = eventTime;
    }

    /** The event in {@code record}, or null if it is not one this reader is sure of. */
    static JsonEvent read(byte[] record) {
        String text;
        try {
            text = StandardCharsets.UTF_8
                    .newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(record))
                    .toString();
        } catch (CharacterCodingException e) {
            return null;
        }
        return new Reader(text).event();
    }

    /** Thrown inside the reader for any record it does not accept; never leaves this class. */
    private static final class Rejected extends Exception {
        private static final long serialVersionUID = 1L;

        Rejected() {
            super(null, null, false, false);
        }
    }

    private static final class Reader {
        private final String text;
        private int at;
        private final String[] values = new String[FIELDS.length];

        Reader(String text) {
            this.text = text;
        }

        JsonEvent event() {
            try {
                space();
                object(0, true);
                space();
                if (at != text.length()) {
                    return null;
                }
                for (String value : values) {
                    if (value == null) {
                        return null;
                    }
                }
                Long user = id(values[USER]);
                Long item = id(values[ITEM]);
                Long time = integer(values[TIME]);
                if (user == null || item == null || time == null
                        || values[RATING].charAt(0) == '"') {
                    return null;
                }
                return new JsonEvent(user, item, Double.parseDouble(values[RATING]), time);
            } catch (Rejected e) {
                return null;
            }
        }

        /** A non-negative integer literal below 2^63, or null. */
        private static Long id(String literal) {
            Long value = integer(literal);
            return value != null && value >= 0 ? value : null;
        }

        /** An integer literal (no fraction or exponent) that fits a long, or null. */
        private static Long integer(String literal) {
            for (int i = literal.charAt(0) == '-' ? 1 : 0; i < literal.length(); i++) {
                char c = literal.charAt(i);
                if (c < '0' || c > '9') {
                    return null;
                }
            }
            try {
                return Long.parseLong(literal);
            } catch (NumberFormatException e) {
                return null;
            }
        }

        private char peek() throws Rejected {
            if (at >= text.length()) {
                throw new Rejected();
            }
            return text.charAt(at);
        }

        private void expect(char c) throws Rejected {
            if (peek() != c) {
                throw new Rejected();
            }
            at++;
        }

        private void space() {
            while (at < text.length()) {
                char c = text.charAt(at);
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                    return;
                }
                at++;
            }
        }

        private void object(int depth, boolean top) throws Rejected {
            if (depth >= MAX_DEPTH) {
                throw new Rejected();
            }
            expect('{');
            space();
            if (peek() == '}') {
                at++;
                return;
            }
            while (true) {
                space();
                int keyStart = at;
                string();
                String key = text.substring(keyStart + 1, at - 1);
                if (key.indexOf('\\') >= 0) {
                    throw new Rejected();
                }
                space();
                expect(':');
                space();
                int valueStart = at;
                value(depth);
                if (top) {
                    keep(key, text.substring(valueStart, at));
                }
                space();
                char c = peek();
                at++;
                if (c == '}') {
                    return;
                }
                if (c != ',') {
                    throw new Rejected();
                }
            }
        }

        private void keep(String key, String value) throws Rejected {
            for (int i = 0; i < FIELDS.length; i++) {
                if (FIELDS[i].equals(key)) {
                    if (values[i] != null) {
                        throw new Rejected();
                    }
                    char first = value.charAt(0);
                    // a field's value must be a number; anything else is the validator's
                    if (first != '-' && (first < '0' || first > '9')) {
                        throw new Rejected();
                    }
                    values[i] = value;
                }
            }
        }

        private void array(int depth) throws Rejected {
            if (depth >= MAX_DEPTH) {
                throw new Rejected();
            }
            expect('[');
            space();
            if (peek() == ']') {
                at++;
                return;
            }
            while (true) {
                space();
                value(depth);
                space();
                char c = peek();
                at++;
                if (c == ']') {
                    return;
                }
                if (c != ',') {
                    throw new Rejected();
                }
            }
        }

        private void value(int depth) throws Rejected {
            char c = peek();
            if (c == '{') {
                object(depth + 1, false);
            } else if (c == '[') {
                array(depth + 1);
            } else if (c == '"') {
                string();
            } else if (c == '-' || (c >= '0' && c <= '9')) {
                number();
            } else if (!word("true") && !word("false") && !word("null")) {
                throw new Rejected();
            }
        }

        private boolean word(String literal) {
            if (text.startsWith(literal, at)) {
                at += literal.length();
                return true;
            }
            return false;
        }

        private void string() throws Rejected {
            expect('"');
            while (true) {
                char c = peek();
                at++;
                if (c == '"') {
                    return;
                }
                if (c < 0x20) {
                    throw new Rejected();
                }
                if (c == '\\') {
                    char escaped = peek();
                    at++;
                    if (escaped == 'u') {
                        for (int i = 0; i < 4; i++) {
                            if (Character.digit(peek(), 16) < 0) {
                                throw new Rejected();
                            }
                            at++;
                        }
                    } else if ("\"\\/bfnrt".indexOf(escaped) < 0) {
                        throw new Rejected();
                    }
                }
            }
        }

        private int digits() {
            int start = at;
            while (at < text.length() && text.charAt(at) >= '0' && text.charAt(at) <= '9') {
                at++;
            }
            return at - start;
        }

        private void number() throws Rejected {
            int start = at;
            if (peek() == '-') {
                at++;
            }
            int first = at;
            int n = digits();
            if (n == 0 || (n > 1 && text.charAt(first) == '0')) {
                throw new Rejected();
            }
            if (at < text.length() && text.charAt(at) == '.') {
                at++;
                if (digits() == 0) {
                    throw new Rejected();
                }
            }
            if (at < text.length() && (text.charAt(at) == 'e' || text.charAt(at) == 'E')) {
                at++;
                if (at < text.length() && (text.charAt(at) == '+' || text.charAt(at) == '-')) {
                    at++;
                }
                if (digits() == 0) {
                    throw new Rejected();
                }
            }
            if (at - start > MAX_NUMBER_CHARS) {
                throw new Rejected();
            }
        }
    }
}
