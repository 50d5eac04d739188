include $(sort $(wildcard $(BR2_EXTERNAL_MINEBOX_PATH)/package/*/*.mk))
