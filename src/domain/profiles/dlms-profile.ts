import { z } from 'zod';

/**
 * The DLMS/COSEM part of a firmware profile: HDLC addressing, security level, control mode and OBIS codes.
 * PLACEHOLDER until the DLMS driver lands (issue 4).
 */
export const DlmsProfileSchema = z.object({}).strict();
export type DlmsProfile = z.infer<typeof DlmsProfileSchema>;
